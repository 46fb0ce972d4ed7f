"""Training and evaluation speed of a DMN (DMN+ by default) on one unit of an application (a bAbI task, SST
fine or binary, the tagger), on the pipeline's own model and data path.

    python bench/train_speed.py --babi-task 1 --size 1k --batch-size 100 --hidden 80 --passes 3 --epochs 2
    python bench/train_speed.py --application sst --unit binary --batch-size 128 --passes 2 --epochs 1
    python bench/train_speed.py --application pos --unit ptb --batch-size 32 --passes 1 --epochs 2
    python bench/train_speed.py --application vqa --unit shapes --batch-size 64 --passes 3 --epochs 1

prints one JSON line; with --results FILE the line is also stored in FILE (a JSON object keyed by the
configuration), which is how bench/results/train_speed.json is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from dmn.apps import APPLICATIONS, application
from dmn.config import DistributedConfig, ModelConfig, TrainConfig
from dmn.distributed import launch
from dmn.evaluate import predict
from dmn.machine import machine
from dmn.models import ModelSizes, build_model
from dmn.train import resolve_device, train_dmn
from dmn.version import code_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--application", choices=sorted(APPLICATIONS), default="babi")
    parser.add_argument("--unit", default=None, help="the unit to train (default: the application's first)")
    parser.add_argument("--babi-task", type=int, default=1, help="bAbI: the task (as --unit)")
    parser.add_argument("--size", choices=["1k", "10k"], default="1k", help="bAbI: the training set size")
    parser.add_argument("--source", default="bundled", help="as `dmn run APPLICATION --source`")
    parser.add_argument("--batch-size", type=int, default=100, help="global batch (split over the processes)")
    parser.add_argument("--model", choices=["dmn+", "dmn"], default="dmn+", help="architecture")
    parser.add_argument("--supervise-gates", action="store_true", help="add the gate supervision loss")
    parser.add_argument("--hidden", type=int, default=80)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-sentences", type=int, default=None, help="story cut (default: the pipeline's)")
    parser.add_argument(
        "--bucket-by-length",
        choices=["on", "off"],
        default=None,
        help="batch by story length (default: the application's)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="data-parallel processes")
    parser.add_argument("--results", type=Path, default=None, help="JSON file to store the figures in")
    args = parser.parse_args()

    device = resolve_device(args.device)
    app = application(args.application)
    # bAbI: the training file's own stories, without renamed copies (the examples the public DMN+ trains on)
    babi = {"size": args.size, "babi_tasks": [args.babi_task], "entity_copies": [0]} if app.name == "babi" else {}
    defaults = app.config_type(source=args.source, **babi)
    model = {"architecture": args.model, "hidden_size": args.hidden, "passes": args.passes}
    model_config = ModelConfig(**{**defaults.model.model_dump(), **model})
    trained = {"batch_size": args.batch_size, "device": str(device), "max_epochs": args.epochs,
               "patience": args.epochs, "target_valid_accuracy": None,  # every epoch runs
               "supervise_gates": args.supervise_gates}  # fmt: skip
    if args.bucket_by_length is not None:
        trained["bucket_by_length"] = args.bucket_by_length == "on"
    train_config = TrainConfig(**{**defaults.train.model_dump(), **trained})  # the application's batching
    config = app.config_type(source=args.source, model=model_config, train=train_config, **babi)
    unit = app.unit_type(args.unit) if args.unit else app.units(config)[0]
    settings = app.settings(config, unit)
    if args.max_sentences:
        settings = {**settings, "sentence_limit": args.max_sentences}
    kind = config.model.answer_kind
    with tempfile.TemporaryDirectory() as data_root:
        dataset = app.tokenise(app.ingest(config, data_root), data_root)
        vocab = dataset.vocabulary()
        rows = dataset.read(unit, "train")
        if app.augment is not None:  # the rows the pipeline trains on (visual QA: and their changed copies)
            rows = app.augment(rows, settings, train_config.seed)
        train = app.encode(rows, vocab, settings, kind)
        test = app.encode(dataset.read(unit, "test"), vocab, settings, kind)
    model_config = config.model
    job = (train, test, model_config, train_config, ModelSizes(len(vocab.words), vocab.answer_size(kind)))
    rates = launch(measure, job, DistributedConfig(nproc_per_node=args.nproc_per_node), str(device))

    figures = {
        "application": app.name,
        "unit": unit,
        **({"babi_task": unit, "size": args.size} if app.name == "babi" else {}),
        "batch_size": args.batch_size,
        "model": args.model,
        "supervise_gates": args.supervise_gates,
        "hidden": args.hidden,
        "passes": args.passes,
        "max_sentences": settings.get("sentence_limit"),
        "processes": args.nproc_per_node,
        "bucket_by_length": train_config.bucket_by_length,
        "ema_decay": train_config.ema_decay,  # the application's default: its update is part of every step
        "train_examples": len(train),
        **rates,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine(),
        "code": code_version(),
    }
    print(json.dumps(figures))
    if args.results:
        store(args.results, figures)


def measure(train, test, model_config, train_config, sizes) -> dict:
    """Train `epochs` epochs with the pipeline's train_dmn (the test split doubles as validation, which is
    not timed); then time evaluation. Runs on every rank; rank 0's figures are returned.

    The training figure is the fastest epoch after the first (the first warms up allocators and caches):
    on a shared machine the slowest epochs measure the neighbours, and the fastest is the one that repeats."""
    result = train_dmn(train, test, model_config, train_config, sizes)
    model = build_model(model_config, sizes).to(resolve_device(train_config.device))
    model.load_state_dict(result.state_dict)
    started = time.perf_counter()
    predict(model, test, batch_size=train_config.batch_size, device=resolve_device(train_config.device))
    seconds = [record["train_seconds"] for record in result.history]
    return {
        "train_examples_per_s": round(len(train) / min(seconds[1:] or seconds), 1),
        "first_epoch_examples_per_s": round(len(train) / seconds[0], 1),
        "eval_examples_per_s": round(len(test) / (time.perf_counter() - started), 1),
    }


def store(path: Path, figures: dict) -> None:
    """Add or replace this configuration's entry; write to a temporary file, then rename."""
    results = json.loads(path.read_text()) if path.exists() else {}
    # DMN+ without supervision keys as before the original DMN came; other settings say theirs
    prefix = ("" if figures["model"] == "dmn+" else figures["model"] + "-") + (
        "sup-" if figures["supervise_gates"] else ""
    )
    if figures["application"] == "babi":
        key = prefix + "task{babi_task}-{size}-b{batch_size}-h{hidden}-p{passes}-s{max_sentences}-n{processes}-{device}"
    else:
        key = "{application}-{unit}-" + prefix + "b{batch_size}-h{hidden}-p{passes}-n{processes}-{device}"
    key = key.format(**figures)
    results[key] = figures
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
