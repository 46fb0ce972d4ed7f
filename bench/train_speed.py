"""Training and evaluation speed of DMN+ on one bAbI task, on the pipeline's own model and data path.

    python bench/train_speed.py --babi-task 1 --size 1k --batch-size 100 --hidden 80 --passes 3 --epochs 2

prints one JSON line; with --results FILE the line is also stored in FILE (a JSON object keyed by the
configuration), which is how bench/results/train_speed.json is written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from dmn.config import DistributedConfig, ModelConfig, TrainConfig
from dmn.data.batching import encode_stories
from dmn.data.parquet import tokenise_babi
from dmn.data.sources import ingest_babi
from dmn.data.vocab import Vocabulary
from dmn.distributed import launch
from dmn.evaluate import predict
from dmn.model import DMNPlus
from dmn.train import resolve_device, train_dmn
from dmn.version import code_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--babi-task", type=int, default=1)
    parser.add_argument("--size", choices=["1k", "10k"], default="1k")
    parser.add_argument("--source", default="bundled", help="as `dmn run babi --source`")
    parser.add_argument("--batch-size", type=int, default=100, help="global batch (split over the processes)")
    parser.add_argument("--hidden", type=int, default=80)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-sentences", type=int, default=None, help="story cut (default: the pipeline's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="data-parallel processes")
    parser.add_argument("--results", type=Path, default=None, help="JSON file to store the figures in")
    args = parser.parse_args()

    device = resolve_device(args.device)
    train_config = TrainConfig(
        batch_size=args.batch_size, device=str(device), max_epochs=args.epochs, patience=args.epochs
    )
    limit = args.max_sentences or train_config.sentence_limit(args.babi_task)
    with tempfile.TemporaryDirectory() as data_root:
        dataset = tokenise_babi(ingest_babi(args.source, args.size, data_root), data_root)
        vocab = Vocabulary.load(dataset.vocab_path)
        train = encode_stories(dataset.read(args.babi_task, "train"), vocab, limit)
        test = encode_stories(dataset.read(args.babi_task, "test"), vocab, limit)
    model_config = ModelConfig(hidden_size=args.hidden, passes=args.passes)
    job = (train, test, model_config, train_config, len(vocab.words), len(vocab.answers))
    rates = launch(measure, job, DistributedConfig(nproc_per_node=args.nproc_per_node), str(device))

    figures = {
        "babi_task": args.babi_task,
        "size": args.size,
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "passes": args.passes,
        "max_sentences": limit,
        "processes": args.nproc_per_node,
        "train_examples": len(train),
        **rates,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "code": code_version(),
    }
    print(json.dumps(figures))
    if args.results:
        store(args.results, figures)


def measure(train, test, model_config, train_config, vocab_size, answer_size) -> dict:
    """Train `epochs` epochs with the pipeline's train_dmn (the test split doubles as validation, which is
    not timed); then time evaluation. Runs on every rank; rank 0's figures are returned."""
    result = train_dmn(train, test, model_config, train_config, vocab_size, answer_size)
    model = DMNPlus(model_config, vocab_size, answer_size).to(resolve_device(train_config.device))
    model.load_state_dict(result.state_dict)
    started = time.perf_counter()
    predict(model, test, batch_size=train_config.batch_size, device=resolve_device(train_config.device))
    seconds = [record["train_seconds"] for record in result.history]
    return {
        "train_examples_per_s": round(len(train) / seconds[-1], 1),
        "first_epoch_examples_per_s": round(len(train) / seconds[0], 1),
        "eval_examples_per_s": round(len(test) / (time.perf_counter() - started), 1),
    }


def store(path: Path, figures: dict) -> None:
    """Add or replace this configuration's entry; write to a temporary file, then rename."""
    results = json.loads(path.read_text()) if path.exists() else {}
    key = "task{babi_task}-{size}-b{batch_size}-h{hidden}-p{passes}-s{max_sentences}-n{processes}-{device}".format(
        **figures
    )
    results[key] = figures
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
