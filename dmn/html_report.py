"""The audit report of an evaluation: one self-contained HTML file (images embedded), readable offline.

It holds the per-task table with the delta against the current champion, the failed tasks, training
curves, heat maps of the memory's gates per pass for a few test stories, and the lineage: data digest,
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
import torch  # noqa: E402

from dmn.checkpoint import load_checkpoint  # noqa: E402
from dmn.data.batching import encode_stories, make_batch  # noqa: E402
from dmn.data.parquet import TokenisedBabi  # noqa: E402
from dmn.data.vocab import Vocabulary  # noqa: E402


@dataclass
class AttentionExample:
    babi_task: int
    sentences: list[str]
    question: str
    answer: str
    predicted: str
    supporting: list[int]
    gates: list[list[float]]  # (P, S)


@torch.no_grad()
def attention_examples(
    dataset: TokenisedBabi, checkpoints: dict[int, str], per_task: int = 2
) -> list[AttentionExample]:
    """The gates of every pass for the first `per_task` test questions of each bAbI task."""
    vocab = Vocabulary.load(dataset.vocab_path)
    examples = []
    for babi_task, path in sorted(checkpoints.items()):
        model, meta = load_checkpoint(path)
        limits = meta["train_config"]
        limit = limits["max_sentences_by_task"].get(babi_task, limits["max_sentences"])
        for row in dataset.read(babi_task, "test")[:per_task]:
            batch = make_batch(encode_stories([row], vocab, limit))
            logits, gates = model(*batch.model_inputs())  # (1, A), (1, P, S)
            cut = max(0, len(row["story"]) - limit)
            examples.append(
                AttentionExample(
                    babi_task,
                    row["story"][cut:],
                    row["question"],
                    row["answer"],
                    vocab.answers[int(logits.argmax(-1))],
                    [i - cut for i in row["supporting"] if i >= cut],
                    gates[0].tolist(),
                )
            )
    return examples


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _curves(histories: dict[int, list[dict]]) -> str:
    figure, axes = plt.subplots(1, len(histories), figsize=(4.5 * len(histories), 3), squeeze=False)
    for axis, (babi_task, history) in zip(axes[0], sorted(histories.items())):
        epochs = [r["epoch"] for r in history]
        axis.plot(epochs, [r["train_loss"] for r in history], label="train loss")
        axis.plot(epochs, [r["valid_loss"] for r in history], label="validation loss")
        axis.set_title(f"bAbI task {babi_task}")
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


def render_html(report: dict, histories: dict[int, list[dict]], examples: list[AttentionExample], champion=None) -> str:
    """The audit report; `champion` is the champion's report, for the deltas (None: no champion)."""
    theirs = {r["babi_task"]: r["accuracy"] for r in champion["babi_tasks"]} if champion else {}
    rows = []
    for r in report["babi_tasks"]:
        delta = f"{r['accuracy'] - theirs[r['babi_task']]:+.1%}" if r["babi_task"] in theirs else "n/a"
        hit = "n/a" if r["support_hit_rate"] is None else f"{r['support_hit_rate']:.1%}"
        rows.append(
            f"<tr><td>{r['babi_task']}</td><td>{r['accuracy']:.1%}</td><td>{delta}</td><td>{r['error']:.1%}</td>"
            f"<td>{'FAILED' if r['failed'] else 'passed'}</td><td>{hit}</td><td>{r['best_epoch']} / {r['epochs']}</td>"
            f"<td>{r['train_seconds']:.0f}</td><td>{r.get('seed', '')}</td><td>{html.escape(r['note'])}</td></tr>"
        )
    against = f"champion: {html.escape(champion['training_digest'][:16])}" if champion else "no champion yet"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"]) or "<li>none</li>"
    failed = ", ".join(map(str, report["failed_tasks"])) or "none"
    heat_maps = "".join(_heat_map(e) for e in examples)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(report["model_name"])}: evaluation</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}img{{margin:.5em}}</style></head><body>
<h1>{html.escape(report["model_name"])}: DMN+ on bAbI {report["size"]}, test split</h1>
<p>Mean error {report["mean_error"]:.2%}; failed tasks (error &gt; 5 %): {failed}. Deltas against the {against}.</p>
<table><tr><th>bAbI task</th><th>accuracy</th><th>&Delta; champion</th><th>error</th><th>status</th>
<th>top gate on a supporting fact</th><th>best epoch / epochs</th><th>train s</th><th>seed</th><th>note</th></tr>
{"".join(rows)}</table>
<h2>Notes</h2><ul>{notes}</ul>
<h2>Training curves</h2>{_curves(histories)}
<h2>Attention of the memory, per pass (* marks a supporting fact)</h2>{heat_maps}
<h2>Lineage</h2><ul>
<li>data digest: <code>{report["data_digest"]}</code></li>
<li>training digest: <code>{report["training_digest"]}</code></li>
<li>code: {html.escape(report["code_version"])}</li><li>machine: {html.escape(report["machine"])}</li>
<li>seed: {report["config"]["train"]["seed"]}</li></ul>
<h2>Configuration</h2><pre>{html.escape(json.dumps(report["config"], indent=2))}</pre>
</body></html>
"""
