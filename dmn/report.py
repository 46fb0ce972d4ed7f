"""The evaluation report of a bAbI run: one JSON document and its markdown rendering."""

from __future__ import annotations

import platform

from dmn.config import BabiRunConfig
from dmn.data.parquet import TokenisedBabi
from dmn.evaluate import FAILED_ERROR
from dmn.version import code_version


def build_report(config: BabiRunConfig, dataset: TokenisedBabi, results: list[dict], training_digest: str) -> dict:
    errors = [r["error"] for r in results]
    return {
        "model_name": config.model_name,
        "size": config.size,
        "data_digest": dataset.digest,
        "training_digest": training_digest,
        "code_version": code_version(),
        "machine": f"{platform.node()} ({platform.machine()}, Python {platform.python_version()})",
        "config": config.model_dump(mode="json"),
        "babi_tasks": results,
        "mean_error": sum(errors) / len(errors),
        "failed_tasks": [r["babi_task"] for r in results if r["failed"]],
        "notes": [f"bAbI task {t}: {note}" for t, note in sorted(dataset.fallbacks.items()) if t in config.babi_tasks],
    }


def report_markdown(report: dict) -> str:
    lines = [
        f"# DMN+ on bAbI ({report['size']}): evaluation on the test split",
        "",
        "| bAbI task | accuracy | error | failed (error > 5 %) | top gate on a supporting fact | best epoch / epochs |",
        "|---:|---:|---:|:---:|---:|---:|",
    ]
    for r in report["babi_tasks"]:
        hit = "n/a" if r["support_hit_rate"] is None else f"{r['support_hit_rate']:.1%}"
        lines.append(
            f"| {r['babi_task']} | {r['accuracy']:.1%} | {r['error']:.1%} | {'yes' if r['failed'] else 'no'} "
            f"| {hit} | {r['best_epoch']} / {r['epochs']} |"
        )
    failed = ", ".join(map(str, report["failed_tasks"])) or "none"
    lines += [
        "",
        f"Mean error {report['mean_error']:.2%}; failed tasks (error > {FAILED_ERROR:.0%}): {failed}.",
        "",
        f"- data digest: `{report['data_digest']}`",
        f"- training digest: `{report['training_digest']}`",
        f"- code: {report['code_version']}",
        f"- machine: {report['machine']}",
        f"- seed: {report['config']['train']['seed']}",
    ]
    lines += [f"- **note**: {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
