"""Baselines for part-of-speech tagging on the pipeline's own splits: the most frequent tag of each training
word (unknown words: the most frequent tag overall), and NLTK's averaged perceptron (its default features,
trained on the same training sentences). Token and unknown-word accuracy on the test split, unknown meaning
absent from the training sentences (the DMN's vocabulary).

    python bench/pos_baselines.py --results results/pos-baselines.json

needs nltk (the dev extra); prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from dmn.apps.pos import APPLICATION as POS
from dmn.apps.pos import PosRunConfig
from dmn.version import code_version


def accuracy(predicted: list[list[str]], sentences: list[dict], known: set[str]) -> dict:
    """Token accuracy, and on the words not in `known` (the training words; None when every word is known)."""
    right = unknown = unknown_right = total = 0
    for tags, sentence in zip(predicted, sentences):
        for tag, gold, word in zip(tags, sentence["tags"], sentence["words"]):
            total += 1
            right += tag == gold
            if word not in known:
                unknown += 1
                unknown_right += tag == gold
    return {"accuracy": right / total, "unknown_word_accuracy": unknown_right / unknown if unknown else None,
            "tokens": total, "unknown_words": unknown}  # fmt: skip


def tagged_splits(source: str) -> tuple[list[dict], list[dict], str]:
    """The training and test sentences ({"words", "tags"}) of `dmn run pos --source SOURCE`, and the data digest."""
    config = PosRunConfig(source=source)
    with tempfile.TemporaryDirectory() as data_root:
        dataset = POS.tokenise(POS.ingest(config, data_root), data_root)
        return dataset.read("ptb", "train"), dataset.read("ptb", "test"), dataset.digest


def most_frequent_tagger(train: list[dict]) -> Callable[[list[str]], list[str]]:
    """Each word's most frequent tag in `train`; a word absent from it, the most frequent tag overall."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for sentence in train:
        for word, tag in zip(sentence["words"], sentence["tags"]):
            counts[word][tag] += 1
    overall = Counter(tag for sentence in train for tag in sentence["tags"]).most_common(1)[0][0]
    return lambda words: [counts[w].most_common(1)[0][0] if w in counts else overall for w in words]


def averaged_perceptron(train: list[dict], iterations: int = 5) -> tuple[Callable[[list[str]], list[str]], float]:
    """NLTK's averaged perceptron (its default features) trained on `train`, and its training time in seconds."""
    from nltk.tag.perceptron import PerceptronTagger

    random.seed(0)  # the perceptron shuffles its training sentences with `random`
    tagger = PerceptronTagger(load=False)
    started = time.perf_counter()
    tagger.train([list(zip(s["words"], s["tags"])) for s in train], nr_iter=iterations)
    seconds = time.perf_counter() - started
    return (lambda words: [tag for _, tag in tagger.tag(list(words))]), seconds


def main() -> None:
    """Train both baselines on the training split, score them on the test split; one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="bundled", help="as `dmn run pos --source`")
    parser.add_argument("--iterations", type=int, default=5, help="perceptron training passes (NLTK's default)")
    parser.add_argument("--results", type=Path, default=None, help="JSON file to write the figures to")
    args = parser.parse_args()
    train, test, digest = tagged_splits(args.source)
    known = {word for sentence in train for word in sentence["words"]}
    frequent = most_frequent_tagger(train)
    perceptron, seconds = averaged_perceptron(train, args.iterations)

    figures = {
        "data": f"{args.source} ({digest[:16]})",
        "train_sentences": len(train),
        "test_sentences": len(test),
        "most_frequent_tag": accuracy([frequent(s["words"]) for s in test], test, known),
        "averaged_perceptron": {
            **accuracy([perceptron(s["words"]) for s in test], test, known),
            "train_seconds": round(seconds, 1),
        },
        "command": "python bench/pos_baselines.py" + (f" --source {args.source}" if args.source != "bundled" else ""),
        "code": code_version(),
    }
    print(json.dumps(figures))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.results.with_name(f".{args.results.name}.tmp")
        temporary.write_text(json.dumps(figures, indent=2) + "\n")
        os.replace(temporary, args.results)


if __name__ == "__main__":
    sys.exit(main())
