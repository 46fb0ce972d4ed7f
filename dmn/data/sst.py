"""Reader of the Stanford Sentiment Treebank (Socher et al. 2013): the PTB-style trees of train.txt, dev.txt
and test.txt, one binarised tree per line, every node (phrase) labelled 0 (very negative) ... 4 (very
positive).

Fine-grained sentiment keeps the five labels; binary drops the neutral ones (2) and reads 0-1 as 0
(negative) and 3-4 as 1 (positive): the published splits are then 8,544 / 1,101 / 2,210 and 6,920 / 872 /
1,821 sentences. Phrase-level training (Socher et al.) takes every distinct phrase of the training trees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dmn.data.ptb import Tree, read_trees
from dmn.errors import DataError

SPLIT_FILES = {"train": "train.txt", "dev": "dev.txt", "test": "test.txt"}
FINE_LABELS = ("0", "1", "2", "3", "4")
GRANULARITIES = ("fine", "binary")


@dataclass(frozen=True)
class Phrase:
    tokens: tuple[str, ...]  # as written in the tree
    label: str  # "0".."4" fine, "0"/"1" binary
    line: int  # line of its tree in the file
    root: bool  # a whole sentence (the evaluation unit), not a phrase of one


def read_sentiment_trees(path: str | Path) -> list[tuple[int, Tree]]:
    """The trees of one SST file; DataError naming file and line of a malformed tree or a label outside 0-4."""
    trees = read_trees(path)
    for line, tree in trees:
        for node in tree.subtrees():
            if node.label not in FINE_LABELS:
                raise DataError(path, f"sentiment label {node.label!r} outside 0-4", line)
    return trees


def binary_label(label: str) -> str | None:
    """Fine label -> binary label, None for neutral."""
    return None if label == "2" else ("0" if label < "2" else "1")


def phrases(trees: list[tuple[int, Tree]], granularity: str, all_phrases: bool) -> list[Phrase]:
    """The sentences of `trees` (roots), then, with `all_phrases`, every other distinct phrase (its first
    occurrence), labelled for `granularity`; neutral ones are dropped for binary."""
    out, seen = [], set()
    nodes = [(line, tree, True) for line, tree in trees]
    if all_phrases:
        nodes += [(line, node, False) for line, tree in trees for node in list(tree.subtrees())[1:]]
    for line, node, root in nodes:
        tokens = tuple(leaf.word for leaf in node.leaves())
        label = node.label if granularity == "fine" else binary_label(node.label)
        if label is None or (not root and tokens in seen):
            continue
        seen.add(tokens)
        out.append(Phrase(tokens, label, line, root))
    return out
