"""The audit report of an evaluation: one self-contained HTML file (images embedded), readable offline.

It holds the per-unit table with the delta against the current champion, the failed units, training
curves, heat maps of the memory's gates per pass for a few test stories (visual QA: drawn over the image's
regions), and the lineage: data digest,
code version, configuration, seed, timings and machine.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no screen: render to memory
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dmn.apps.base import Application  # noqa: E402
from dmn.checkpoint import load_checkpoint  # noqa: E402
from dmn.config import ModelConfig  # noqa: E402
from dmn.data.batching import make_batch  # noqa: E402
from dmn.data.images import snake_order  # noqa: E402
from dmn.data.parquet import TokenisedData  # noqa: E402
from dmn.data.vocab import Vocabulary  # noqa: E402
from dmn.report import unit_results, weights_kept  # noqa: E402

STATUS = {True: "FAILED", False: "passed", None: "n/a"}  # n/a: the application has no pass threshold


@dataclass
class AttentionExample:
    unit: int | str
    sentences: list[str]
    question: str
    answer: str
    predicted: str
    supporting: list[int]
    gates: list[list[float]]  # (P, S)
    image: np.ndarray | None = None  # visual QA: the image (H, W, C), its regions the facts in snake order


@torch.no_grad()
def attention_examples(
    app: Application, dataset: TokenisedData, checkpoints: dict, per_unit: int = 2, vocab: Vocabulary | None = None
) -> list[AttentionExample]:
    """The gates of every pass for the first `per_unit` test examples of each unit, read through `vocab` (the
    models' own; default the dataset's)."""
    vocab = vocab or dataset.vocabulary()
    examples = []
    for unit, path in sorted(checkpoints.items()):
        model, meta = load_checkpoint(path)
        kind = ModelConfig(**meta["model_config"]).answer_kind
        for row in dataset.read(unit, "test")[:per_unit]:
            data = app.encode([row], vocab, meta["settings"], kind)
            output = model(*make_batch(data).model_inputs())  # logits (1, T, A), gates (1, P, S)
            facts, question, answer = app.audit_view(row)
            examples.append(
                AttentionExample(
                    unit,
                    facts[-output.gates.size(-1) :],
                    question,
                    answer,
                    _text(app.render_answer(output.logits.argmax(-1)[0].tolist(), vocab, kind)),
                    [int(i) for i in data.supporting[0] if i >= 0],
                    output.gates[0].tolist(),
                    app.audit_image(row) if app.audit_image else None,
                )
            )
    return examples


def _text(answer) -> str:
    """An answer as the heat map's title shows it: a tagger's list of tags joined by spaces."""
    return " ".join(answer) if isinstance(answer, list) else answer


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _curves(histories: dict, unit_title: str) -> str:
    figure, axes = plt.subplots(1, len(histories), figsize=(4.5 * len(histories), 3), squeeze=False)
    for axis, (unit, history) in zip(axes[0], sorted(histories.items())):
        epochs = [r["epoch"] for r in history]
        axis.plot(epochs, [r["train_loss"] for r in history], label="train loss")
        axis.plot(epochs, [r["valid_loss"] for r in history], label="validation loss")
        axis.set_title(f"{unit_title} {unit}")
        axis.set_xlabel("epoch")
        axis.legend()
    return _png(figure)


def _heat_map(example: AttentionExample) -> str:
    gates = torch.tensor(example.gates).T  # (S, P)
    figure, axis = plt.subplots(figsize=(2 + 0.6 * gates.size(1), 0.35 * gates.size(0) + 1))
    axis.imshow(gates, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    labels = [("* " if i in example.supporting else "") + s for i, s in enumerate(example.sentences)]
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.set_xticks(range(gates.size(1)), [f"pass {p + 1}" for p in range(gates.size(1))], fontsize=8)
    axis.set_title(f"{example.question} {example.answer} (predicted {example.predicted})", fontsize=9)
    return _png(figure)


def _attention_on_image(example: AttentionExample) -> str:
    """The image, then per pass its regions shaded by their gates (the facts are the regions in snake order)."""
    image, gates = example.image, np.asarray(example.gates)  # (H, W, C), (P, R)
    grid = round(gates.shape[1] ** 0.5)
    height, width = image.shape[:2]
    figure, axes = plt.subplots(1, len(gates) + 1, figsize=(2.2 * (len(gates) + 1), 2.6), squeeze=False)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image", fontsize=8)
    for p, axis in enumerate(axes[0, 1:]):
        cells = np.zeros((grid, grid))
        for gate, (row, column) in zip(gates[p], snake_order(grid)):
            cells[row, column] = gate
        axis.imshow(image)
        axis.imshow(cells, cmap="magma", alpha=0.6, vmin=0, vmax=1, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        axis.set_title(f"pass {p + 1} (max {gates[p].max():.2f})", fontsize=8)
    for axis in axes[0]:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"{example.question}? {example.answer} (predicted {example.predicted})", fontsize=9)
    return _png(figure)


def render_html(report: dict, histories: dict, examples: list[AttentionExample], champion=None) -> str:
    """The audit report; `champion` is the champion's report, for the deltas (None: no champion; none either when
    it was evaluated on other test data, as `dmn evaluate` on another dataset is)."""
    comparable = champion is not None and champion.get("data_digest") == report["data_digest"]
    theirs = {r["unit"]: r["accuracy"] for r in unit_results(champion)} if comparable else {}
    unit_title = report["unit_title"]
    rows = []
    for r in report["units"]:
        delta = f"{r['accuracy'] - theirs[r['unit']]:+.1%}" if r["unit"] in theirs else "n/a"
        hit = "n/a" if r["support_hit_rate"] is None else f"{r['support_hit_rate']:.1%}"
        rows.append(
            f"<tr><td>{r['unit']}</td><td>{r['accuracy']:.1%}</td><td>{delta}</td><td>{r['error']:.1%}</td>"
            f"<td>{STATUS[r['failed']]}</td><td>{hit}</td><td>{r['best_epoch']} / {r['epochs']}</td>"
            f"<td>{r['train_seconds']:.0f}</td><td>{r.get('seed', '')}</td><td>{html.escape(r['note'])}</td></tr>"
        )
    against = (
        f"Deltas against the champion: {html.escape(champion['training_digest'][:16])}."
        if comparable
        else "No champion yet: no deltas."
        if champion is None
        else "The champion was evaluated on other test data: no deltas."
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"]) or "<li>none</li>"
    failed = ", ".join(map(str, report["failed_units"])) or "none"
    pass_error = report.get("pass_error", 0.05)
    verdict = "" if pass_error is None else f"; failed (error &gt; {pass_error:.0%}): {failed}"
    anchors = "".join(f"<li>{html.escape(a)}</li>" for a in report["anchors"]) or "<li>none</li>"
    title = f"{report['architecture'].upper()} on {html.escape(report['dataset'])}"
    supervision = "gates supervised with the supporting facts" if report["supervise_gates"] else "answers only"
    kept = weights_kept(report)
    heat_maps = "".join(_heat_map(e) if e.image is None else _attention_on_image(e) for e in examples)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(report["model_name"])}: evaluation</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}img{{margin:.5em}}</style></head><body>
<h1>{html.escape(report["model_name"])}: {title}, test split</h1>
<p>Model: {report["architecture"]} ({report["answer"]} answers); training: {supervision}{kept}.</p>
<p>Mean error {report["mean_error"]:.2%}{verdict}. {against}</p>
<table><tr><th>{html.escape(unit_title)}</th><th>accuracy</th><th>&Delta; champion</th><th>error</th><th>status</th>
<th>top gate on a supporting fact</th><th>best epoch / epochs</th><th>train s</th><th>seed</th><th>note</th></tr>
{"".join(rows)}</table>
<h2>Anchors</h2><ul>{anchors}</ul>
<h2>Notes</h2><ul>{notes}</ul>
<h2>Training curves</h2>{_curves(histories, unit_title)}
<h2>Attention of the memory, per pass (* marks a supporting fact)</h2>{heat_maps}
<h2>Lineage</h2><ul>
<li>data digest: <code>{report["data_digest"]}</code></li>
<li>training digest: <code>{report["training_digest"]}</code></li>
<li>code: {html.escape(report["code_version"])}</li><li>machine: {html.escape(report["machine"])}</li>
<li>seed: {report["config"]["train"]["seed"]}</li></ul>
<h2>Configuration</h2><pre>{html.escape(json.dumps(report["config"], indent=2))}</pre>
</body></html>
"""
