"""The evaluation report of a run, for any application: one JSON document and its markdown rendering."""

from __future__ import annotations

import platform

from dmn.apps.base import Application, RunConfig
from dmn.data.parquet import TokenisedData
from dmn.evaluate import FAILED_ERROR
from dmn.version import code_version


def build_report(
    app: Application, config: RunConfig, dataset: TokenisedData, results: list[dict], training_digest: str
) -> dict:
    errors = [r["error"] for r in results]
    units = app.units(config)
    return {
        "application": app.name,
        "dataset": app.describe(config),
        "unit_name": app.unit_name,
        "unit_title": app.unit_title,
        "model_name": config.model_name,
        "architecture": config.model.architecture,
        "answer": config.model.answer_kind,
        "supervise_gates": config.train.supervise_gates,
        "data_digest": dataset.digest,
        "training_digest": training_digest,
        "code_version": code_version(),
        "machine": f"{platform.node()} ({platform.machine()}, Python {platform.python_version()})",
        "config": config.model_dump(mode="json"),
        "units": results,
        "mean_error": sum(errors) / len(errors),
        "failed_units": [r["unit"] for r in results if r["failed"]],
        "notes": [f"{app.unit_title} {u}: {note}" for u, note in sorted(dataset.notes.items()) if u in units],
        "anchors": app.anchors(config),
    }


def unit_results(report: dict) -> list[dict]:
    """The per-unit rows of a report, also of a report written before applications had units (bAbI only)."""
    if "units" in report:
        return report["units"]
    return [{**row, "unit": row["babi_task"]} for row in report["babi_tasks"]]


def report_markdown(report: dict) -> str:
    unit_title = report.get("unit_title", "bAbI task")
    supervision = "gates supervised with the supporting facts" if report.get("supervise_gates") else "answers only"
    lines = [
        f"# {report.get('architecture', 'dmn+').upper()} on {report.get('dataset', 'bAbI')}: evaluation on the "
        f"test split",
        "",
        f"Model: {report.get('architecture', 'dmn+')} ({report.get('answer', 'class')} answers); training: "
        f"{supervision}.",
        "",
        f"| {unit_title} | accuracy | error | failed (error > 5 %) | top gate on a supporting fact | "
        "best epoch / epochs |",
        "|---:|---:|---:|:---:|---:|---:|",
    ]
    for r in unit_results(report):
        hit = "n/a" if r["support_hit_rate"] is None else f"{r['support_hit_rate']:.1%}"
        lines.append(
            f"| {r['unit']} | {r['accuracy']:.1%} | {r['error']:.1%} | {'yes' if r['failed'] else 'no'} "
            f"| {hit} | {r['best_epoch']} / {r['epochs']} |"
        )
    failed = ", ".join(map(str, report.get("failed_units", report.get("failed_tasks", [])))) or "none"
    rows = unit_results(report)
    passed = sum(not r["failed"] for r in rows)
    lines += [
        "",
        f"Mean error {report['mean_error']:.2%}; {passed} of {len(rows)} passed; failed (error > "
        f"{FAILED_ERROR:.0%}): {failed}.",
        "",
    ]
    lines += [f"- anchor: {anchor}" for anchor in report.get("anchors", [])]
    lines += [
        f"- data digest: `{report['data_digest']}`",
        f"- training digest: `{report['training_digest']}`",
        f"- code: {report['code_version']}",
        f"- machine: {report['machine']}",
        f"- seed: {report['config']['train']['seed']}",
    ]
    lines += [f"- **note**: {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
