"""The README's bAbI results table, generated from the committed results files of the runs (20 tasks each, or the
tasks a column's heading names):

    python bench/babi_table.py            # rewrite the table in README.md from results/babi-*.json
    python bench/babi_table.py --check    # exit 1 when README.md's table differs from what the files give

The results files are written by `python bench/record_run.py --name babi-1k -- run babi --babi-tasks all` (the
default: at 1k, one joint model of the 20 tasks), the same with `--joint no` (`--name babi-1k-per-task`, a model
per task, the papers' protocol), with `--seeds 0,1` (`--name babi-1k-joint-seeds-2`, two joint models, validation
choosing per task), with `--patience 40` (`--name babi-1k-patience-40`), with `--joint-entity-copies 4`
(`--name babi-1k-joint`) and with `--joint no --supervise-gates` (`--name babi-1k-supervised`, the attention
trained on the supporting facts), with `--supervise-gates` alone (`--name babi-1k-joint-supervised`), with
`--ema-decay none` (`babi-1k-weights-as-trained`: the default command before the moving average), and
`python bench/record_run.py --name babi-10k -- run babi --size 10k --babi-tasks all` (and its variants, among them
`--babi-tasks 7,14,17,18 --patience 60`, `--name babi-10k-tasks-7-14-17-18`); a run without its file is
left out. The published column is DMN+ on bAbI 10k (Xiong et al. 2016, ../shared/docs/PAPERS.md, V/S).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- babi-table:begin (bench/babi_table.py writes this) -->", "<!-- babi-table:end -->"
# results file (results/NAME.json) -> its column's heading
RUNS = {
    "babi-1k": "1k (default: joint, 2 renamed copies, weights averaged)",
    "babi-1k-weights-as-trained": "1k, joint, weights as trained (`--ema-decay none`; the default before code 5127df2)",
    "babi-1k-per-task": "1k, a model per task",
    "babi-1k-joint-seeds-2": "1k, joint, 2 seeds",
    "babi-1k-joint-each-task-epochs": "1k, joint, each task's epoch",
    "babi-1k-patience-40": "1k, joint, patience 40",
    "babi-1k-joint": "1k, joint, 4 renamed copies",
    "babi-1k-joint-supervised": "1k, joint, gates supervised",
    "babi-1k-supervised": "1k, a model per task, gates supervised",
    "babi-10k": "10k",
    "babi-10k-l2-0": "10k, no L2",
    "babi-10k-l2-1e-4": "10k, L2 1e-4, patience 60",
    "babi-10k-tasks-7-14-17-18": "10k, patience 60, weights averaged (default since 5127df2), tasks 7, 14, 17, 18",
}
# DMN+ bAbI-10k test error per task, % (the paper's table; the tasks not listed are 0.0)
DMN_PLUS_10K_ERROR = {2: 0.3, 3: 1.1, 5: 0.5, 7: 2.4, 14: 0.2, 16: 45.3, 17: 4.2, 18: 2.1}


def table(results: dict[str, dict]) -> str:
    """Markdown: a row per bAbI task, a column per run (accuracy; epochs), the published 10k error."""
    runs = [run for run in RUNS if run in results]
    tasks = {run: {row["unit"]: row for row in results[run]["units"]} for run in runs}
    header = ["bAbI task", *(f"{RUNS[run]}: test accuracy (best epoch / epochs)" for run in runs), "DMN+ paper, 10k"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(runs) + 1)]
    for babi_task in range(1, 21):
        cells = [str(babi_task)]
        for run in runs:
            row = tasks[run].get(babi_task)
            cells.append(_cell(row) if row else "—")
        cells.append(f"{100 - DMN_PLUS_10K_ERROR.get(babi_task, 0.0):.1f} %")
        lines.append("| " + " | ".join(cells) + " |")
    summary = ["**mean error; failed (error > 5 %)**"]
    for run in runs:
        failed = results[run]["failed_units"]
        units = len(results[run]["units"])
        over = f" of {units} tasks" if units < 20 else ""  # a run of some tasks: its mean is theirs alone
        summary.append(f"**{100 * results[run]['mean_error']:.1f} %{over}; {len(failed)}** ({_tasks(failed)})")
    summary.append("2.8 %; 1 (16)")
    lines.append("| " + " | ".join(summary) + " |")
    notes = [
        'Per cell: test accuracy, failed where the error is above 5 %, (best epoch / epochs trained; "renamed ×N" '
        "where validation kept the model trained with N renamed copies of each story, `dmn/data/entities.py`; "
        '"joint" where it kept the one model trained on the 20 tasks together, `--joint`).'
    ]
    for run in runs:
        recorded = results[run]["recorded"]
        notes.append(
            f"- {RUNS[run]}: `python bench/record_run.py --name {run} -- {recorded['command'][4:]}`, "
            f"{recorded['wall_seconds'] / 60:.1f} min for the whole command on {recorded['cores']} cores "
            f"(`results/{run}.md`, code {results[run]['code_version']})."
        )
    return "\n".join([*lines, "", *notes])


def _cell(row: dict) -> str:
    failed = " (failed)" if row["failed"] else ""
    settings = row.get("settings") or {}
    copies = settings.get("entity_copies")
    kept = "".join([", joint"] * bool(settings.get("joint")) + ([f", renamed ×{copies}"] if copies else []))
    return f"{100 * row['accuracy']:.1f} %{failed} ({row['best_epoch']} / {row['epochs']}{kept})"


def _tasks(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids) if ids else "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when README.md differs")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="folder of the babi-*.json files")
    args = parser.parse_args()
    results = {}
    for run in RUNS:
        path = args.results / f"{run}.json"
        if path.exists():
            results[run] = json.loads(path.read_text())
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{args.readme}: no generated table (the lines {BEGIN!r} and {END!r})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    generated = f"{head}{BEGIN}\n{table(results) if results else 'No bAbI results file yet.'}\n{END}{tail}"
    if args.check:
        if generated != text:
            print(f"{args.readme}: the bAbI table differs from {args.results}; run python bench/babi_table.py")
            return 1
        return 0
    temporary = args.readme.with_name(f".{args.readme.name}.tmp")
    temporary.write_text(generated)
    os.replace(temporary, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
