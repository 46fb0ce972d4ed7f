"""Baselines for visual QA on the pipeline's own SHAPES splits: the majority answer of the training split, and
a question-only DMN, trained the same way as `dmn run vqa` (same configuration, augmentation, validation
split and early stopping) on blank images, so that it can read the question alone. Test accuracy of each.

    python bench/vqa_baselines.py --results results/vqa-baselines.json

prints one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from emit import emit

from dmn.apps.vqa import APPLICATION as VQA
from dmn.apps.vqa import VqaRunConfig
from dmn.data.images import from_cells, to_cells
from dmn.evaluate import evaluate
from dmn.models import ModelSizes, build_model
from dmn.train import train_dmn
from dmn.version import code_version


def blank(rows: list[dict]) -> list[dict]:
    """The rows with every pixel of their images 0."""
    return [{**row, **to_cells(np.zeros_like(from_cells(row)))} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="bundled", help="as `dmn run vqa --source`")
    parser.add_argument("--results", type=Path, default=None, help="also write the JSON line here")
    args = parser.parse_args()
    config = VqaRunConfig(source=args.source)
    unit = VQA.units(config)[0]
    with tempfile.TemporaryDirectory() as data_root:
        dataset = VQA.tokenise(VQA.ingest(config, data_root), data_root)
        train, dev, test = (dataset.read(unit, split) for split in ("train", "dev", "test"))
        vocab = dataset.vocabulary()
    majority = Counter(row["answer"] for row in train).most_common(1)[0][0]

    settings, kind = VQA.settings(config, unit), config.model.answer_kind
    sizes = ModelSizes(len(vocab.words), vocab.answer_size(kind))
    started = time.perf_counter()
    result = train_dmn(
        VQA.encode(VQA.augment(blank(train), settings, config.train.seed), vocab, settings, kind),
        VQA.encode(blank(dev), vocab, settings, kind),
        config.model,
        config.train,
        sizes,
    )
    seconds = time.perf_counter() - started
    model = build_model(config.model, sizes)
    model.load_state_dict(result.state_dict)
    question_only = evaluate(model, VQA.encode(blank(test), vocab, settings, kind))["accuracy"]
    emit(
        {
            "data": f"SHAPES {args.source} ({dataset.digest[:16]})",
            "train_examples": len(train),
            "test_examples": len(test),
            "majority_answer": majority,
            "majority_answer_accuracy": round(float(np.mean([row["answer"] == majority for row in test])), 4),
            "question_only_dmn_accuracy": round(question_only, 4),
            "question_only_best_epoch": result.best_epoch,
            "question_only_epochs": len(result.history),
            "question_only_train_seconds": round(seconds, 1),
            "code": code_version(),
        },
        args.results,
    )


if __name__ == "__main__":
    sys.exit(main())
