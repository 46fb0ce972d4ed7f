"""The evaluation report of a run, for any application: one JSON document and its markdown rendering."""

from __future__ import annotations

from dmn.apps.base import Application, RunConfig
from dmn.data.parquet import TokenisedData
from dmn.machine import machine
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
        "machine": machine(),
        "config": config.model_dump(mode="json"),
        "units": results,
        "mean_error": sum(errors) / len(errors),
        "pass_error": app.pass_error,
        "failed_units": [r["unit"] for r in results if r["failed"]],
        "notes": [f"{app.unit_title} {u}: {note}" for u, note in sorted(dataset.notes.items()) if u in units],
        "anchors": app.anchors(config),
    }


def unit_results(report: dict) -> list[dict]:
    """The per-unit rows of a report, also of a report written before applications had units (bAbI only)."""
    if "units" in report:
        return report["units"]
    return [{**row, "unit": row["babi_task"]} for row in report["babi_tasks"]]


def weights_kept(report: dict) -> str:
    """'; weights kept: a moving average …' where the run averaged its weights (TrainConfig.ema_decay), else ''."""
    decay = report["config"].get("train", {}).get("ema_decay")
    return f"; weights kept: a moving average of the trained ones (decay {decay})" if decay else ""


def report_markdown(report: dict) -> str:
    unit_title = report.get("unit_title", "bAbI task")
    supervision = "gates supervised with the supporting facts" if report.get("supervise_gates") else "answers only"
    kept = weights_kept(report)
    lines = [
        f"# {report.get('architecture', 'dmn+').upper()} on {report.get('dataset', 'bAbI')}: evaluation on the "
        f"test split",
        "",
        f"Model: {report.get('architecture', 'dmn+')} ({report.get('answer', 'class')} answers, "
        f"{_passes(report['config']['model'].get('passes', 3))}, word vectors "
        f"{report['config']['model'].get('word_vectors', 'random')}); training: {supervision}{kept}.",
        "",
    ]
    if "evaluated" in report:  # a re-evaluation of a registered version: which one an alias resolved to
        evaluated = report["evaluated"]
        lines += [f"Evaluated: {evaluated['model_uri']} = {evaluated['name']} version {evaluated['version']}."]
        if "input_tokens" in evaluated:  # what the version's vocabulary lacks in another dataset
            lines += [
                f"Test tokens missing from this version's vocabulary (read as the unknown word): "
                f"{evaluated['unknown_input_tokens']:,} of {evaluated['input_tokens']:,} (every token its models "
                f"read in the stories and questions); test answers (tagging: tags) it cannot give, scored wrong: "
                f"{evaluated['unknown_answers']:,}."
            ]
        lines += [""]
    rows = unit_results(report)
    pass_error = report.get("pass_error", 0.05)  # reports before applications: bAbI's convention
    columns = [(unit_title, lambda r: str(r["unit"])), ("accuracy", lambda r: f"{r['accuracy']:.1%}")]
    if any("vqa_accuracy" in r for r in rows):  # visual QA against ten human answers
        columns.append(("VQA accuracy", lambda r: _percent(r.get("vqa_accuracy"))))
    if any("dev_accuracy" in r for r in rows):
        columns.append(("dev accuracy", lambda r: f"{r['dev_accuracy']:.1%}"))
    if any("unknown_word_accuracy" in r for r in rows):  # tagging
        columns.append(("unknown-word accuracy", lambda r: _percent(r["unknown_word_accuracy"])))
        columns.append(("sentence accuracy", lambda r: f"{r['sentence_accuracy']:.1%}"))
    columns.append(("error", lambda r: f"{r['error']:.1%}"))
    if pass_error is not None:
        columns.append((f"failed (error > {pass_error:.0%})", lambda r: "yes" if r["failed"] else "no"))
    if any(r["support_hit_rate"] is not None for r in rows):
        columns.append(("top gate on a supporting fact", lambda r: _percent(r["support_hit_rate"])))
    columns.append(("best epoch / epochs", lambda r: f"{r['best_epoch']} / {r['epochs']}"))
    if any(r.get("variant") for r in rows):  # the settings variant validation kept (Application.variant_title)
        columns.append(("variant kept", lambda r: r.get("variant") or "—"))
    lines += [
        "| " + " | ".join(title for title, _ in columns) + " |",
        "|" + "---:|" * len(columns),
        *("| " + " | ".join(cell(r) for _, cell in columns) + " |" for r in rows),
        "",
    ]
    summary = f"Mean error {report['mean_error']:.2%}"
    if pass_error is not None:
        failed = ", ".join(map(str, report.get("failed_units", report.get("failed_tasks", [])))) or "none"
        passed = sum(not r["failed"] for r in rows)
        summary += f"; {passed} of {len(rows)} passed; failed (error > {pass_error:.0%}): {failed}"
    lines += [summary + ".", ""]
    lines += [line for r in rows if "by_group" in r for line in question_type_lines(r, unit_title)]
    lines += [line for r in rows if "confusion" in r for line in per_class_lines(r, unit_title)]
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


def question_type_lines(row: dict, unit_title: str) -> list[str]:
    """Markdown of one unit's accuracy per question type."""
    lines = [f"### {unit_title} {row['unit']}: by question type", "", "| question type | examples | accuracy |"]
    lines.append("|---|---:|---:|")
    lines += [f"| {name} | {g['examples']} | {g['accuracy']:.1%} |" for name, g in row["by_group"].items()]
    return [*lines, ""]


def per_class_lines(row: dict, unit_title: str, top: int = 10) -> list[str]:
    """Markdown of one unit's per-class precision and recall (by support), then its confusion matrix (up to
    ten classes) or its `top` most frequent confusions."""
    confusion, classes = row["confusion"], row["classes"]
    support = [sum(r) for r in confusion]
    predicted = [sum(column) for column in zip(*confusion)]
    lines = [
        f"### {unit_title} {row['unit']}: per class",
        "",
        "| class | precision | recall | support |",
        "|---|---:|---:|---:|",
    ]
    for i in sorted(range(len(classes)), key=lambda i: -support[i]):
        if support[i] or predicted[i]:
            precision = _percent(confusion[i][i] / predicted[i] if predicted[i] else None)
            recall = _percent(confusion[i][i] / support[i] if support[i] else None)
            lines.append(f"| {classes[i]} | {precision} | {recall} | {support[i]} |")
    lines.append("")
    seen = [i for i in range(len(classes)) if support[i] or predicted[i]]  # binary SST: 0 and 1 of the 5 labels
    if len(seen) <= 10:
        lines += ["Confusion matrix (rows: true, columns: predicted):", ""]
        lines += ["| | " + " | ".join(classes[i] for i in seen) + " |", "|---|" + "---:|" * len(seen)]
        lines += [f"| {classes[t]} | " + " | ".join(str(confusion[t][p]) for p in seen) + " |" for t in seen]
    else:
        pairs = sorted(
            ((n, classes[t], classes[p]) for t, r in enumerate(confusion) for p, n in enumerate(r) if t != p and n),
            reverse=True,
        )[:top]
        lines += ["Most frequent confusions:", "", "| true | predicted | count |", "|---|---|---:|"]
        lines += [f"| {t} | {p} | {n} |" for n, t, p in pairs]
    return [*lines, ""]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _passes(n: int) -> str:
    return f"{n} pass" if n == 1 else f"{n} passes"
