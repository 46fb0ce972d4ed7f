"""Training speed of our DMN+ and of the public PyTorch DMN+ (github.com/dandelin/Dynamic-memory-networks-plus-
Pytorch, the peer) side by side: the same machine, the same run, the same bAbI 1k training file, batch 100,
hidden 80, 3 passes, the same threads; the peer's own model, collate function and training step.

    python bench/side_by_side.py --peer-dir /path/to/Dynamic-memory-networks-plus-Pytorch \\
        --babi-dir ../shared/data/babi/tasks_1-20_v1-2/en --results bench/results/side_by_side.json

The peer is a clone outside this repository (its code is run, never copied here). It is written for CUDA
and for an old torch: `.cuda()` is made a no-op, and the globals its script sets (`answers`, read by its
loss, and `hidden_size`, read by its input module) are set; nothing else is changed. Its stories are cut to
70 sentences (hard-coded in its collate function). Each configuration is measured `--repeats` times,
alternating ours and the peer's in fresh processes, each over `--epochs` epochs, and each side's fastest
epoch after the first is kept (examples/s of the training step, data collation included on both sides).
Prints one JSON line per configuration; --results stores them with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from emit import emit

from dmn.version import code_version

CONFIGURATIONS = ((1, 70), (3, 70), (3, 130))  # (bAbI task, our story cut); the peer always cuts at 70


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-dir", type=Path, required=True, help="a clone of the peer's repository")
    parser.add_argument("--babi-dir", type=Path, required=True, help="the bAbI en (1k) folder of qa*_train.txt files")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per side and configuration")
    parser.add_argument(
        "--epochs", type=int, default=5, help="epochs a measurement (its fastest after the first counts)"
    )
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of both sides (default: torch's)")
    parser.add_argument("--results", type=Path, default=None, help="JSON file to store the figures in")
    parser.add_argument("--peer-task", type=int, default=None, help=argparse.SUPPRESS)  # a peer worker process
    args = parser.parse_args()
    for path, flag in ((args.peer_dir / "babi_main.py", "--peer-dir"), (args.babi_dir, "--babi-dir")):
        if not path.exists():
            sys.exit(f"{flag}: {path} does not exist")
    if args.peer_task is not None:
        rate = peer_speed(args.peer_dir, args.babi_dir, args.peer_task, args.epochs)
        print(json.dumps({"train_examples_per_s": rate}))
        return
    figures = {}
    for babi_task, cut in CONFIGURATIONS:
        ours, peer = [], []
        for _ in range(args.repeats):
            ours.append(_ours(args, babi_task, cut))
            peer.append(_peer(args, babi_task))
        entry = {
            "babi_task": babi_task,
            "our_max_sentences": cut,
            "peer_max_sentences": 70,
            "ours_examples_per_s": max(ours),
            "peer_examples_per_s": max(peer),
            "ratio": round(max(ours) / max(peer), 2),
            "all_ours": ours,
            "all_peer": peer,
        }
        print(json.dumps(entry), flush=True)
        figures[f"task{babi_task}-ours-s{cut}-peer-s70"] = entry
    summary = {
        "code": code_version(),
        "peer": f"dandelin/Dynamic-memory-networks-plus-Pytorch {_peer_commit(args.peer_dir)}",
        "threads": args.threads or torch.get_num_threads(),
        "epochs": args.epochs,
        "torch": torch.__version__,
        "configurations": figures,
    }
    emit(summary, args.results)


def _ours(args, babi_task: int, cut: int) -> float:
    command = [sys.executable, "bench/train_speed.py", "--babi-task", str(babi_task), "--size", "1k",
               "--batch-size", "100", "--hidden", "80", "--passes", "3", "--epochs", str(args.epochs),
               "--max-sentences", str(cut)]  # fmt: skip
    line = subprocess.run(command, check=True, capture_output=True, text=True, env=_environment(args))
    line = line.stdout.strip().splitlines()[-1]
    return json.loads(line)["train_examples_per_s"]


def _peer(args, babi_task: int) -> float:
    command = [sys.executable, "bench/side_by_side.py", "--peer-dir", str(args.peer_dir), "--babi-dir",
               str(args.babi_dir), "--peer-task", str(babi_task), "--epochs", str(args.epochs)]  # fmt: skip
    line = subprocess.run(command, check=True, capture_output=True, text=True, env=_environment(args))
    line = line.stdout.strip().splitlines()[-1]
    return json.loads(line)["train_examples_per_s"]


def _environment(args) -> dict:
    """Both sides' processes: torch's default threads, or --threads (OMP_NUM_THREADS, read as torch starts)."""
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads)} if args.threads else dict(os.environ)


def _peer_commit(peer_dir: Path) -> str:
    result = subprocess.run(["git", "-C", str(peer_dir), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown commit"


def peer_speed(peer_dir: Path, babi_dir: Path, babi_task: int, epochs: int = 2) -> float:
    """The peer's training step over its training split (the first 90 % of the file), `epochs` times, in its
    own order (a DataLoader shuffle, its pad_collate); examples/s of the fastest epoch after the first (as
    bench/train_speed.py measures ours)."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    sys.path.insert(0, str(peer_dir))
    import babi_loader  # noqa: PLC0415 (the peer's modules, importable only now)
    import babi_main  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as scratch:  # the peer reads data/en-10k/qa{N}_* from its working folder
        (Path(scratch) / "data").mkdir()
        (Path(scratch) / "data" / "en-10k").symlink_to(babi_dir.resolve())
        cwd = os.getcwd()
        os.chdir(scratch)
        try:
            dataset = babi_loader.BabiDataset(babi_task)
        finally:
            os.chdir(cwd)
    babi_main.hidden_size = 80  # its input module reads the hidden size from a global too
    torch.manual_seed(0)
    model = babi_main.DMNPlus(80, len(dataset.QA.VOCAB), num_hop=3, qa=dataset.QA)
    optimizer = torch.optim.Adam(model.parameters())
    dataset.set_mode("train")
    seconds = []
    for _ in range(epochs):
        loader = torch.utils.data.DataLoader(dataset, batch_size=100, shuffle=True, collate_fn=babi_loader.pad_collate)
        model.train()
        started = time.perf_counter()
        for contexts, questions, answers in loader:
            optimizer.zero_grad()
            babi_main.answers = answers  # its get_loss reads the answers from a global
            loss, _ = model.get_loss(contexts.long(), questions.long(), answers)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return round(len(dataset) / min(seconds[1:] or seconds), 1)


if __name__ == "__main__":
    sys.exit(main())
