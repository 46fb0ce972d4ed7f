"""A relabelled copy of bAbI: every word of every file (names, places, objects, verbs, answers) replaced by an
invented word, the same word everywhere, so the tasks are the same up to their names. A model that learns
from the data alone scores the same on the copy.

    python bench/relabel_babi.py --source ../shared/data/babi/tasks_1-20_v1-2/en --out /tmp/babi-relabelled
    dmn run babi --source /tmp/babi-relabelled --babi-tasks all

The invented words have one length and keep the words' alphabetical order (`--order keep`, the default), so
the vocabulary gives every word the id its original had, and training on the copy takes exactly the steps it
takes on the original: the answers and the test accuracy are then equal, not only alike (tests/test_bench.py
checks it on task 1). `--order shuffle` assigns them at random instead (the same task under another vocabulary
order: alike within seed noise).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

WORD = re.compile(r"[^\W\d_]+")  # runs of letters: the words; digits (line and fact ids), punctuation and tabs stay


def invented_words(count: int, seed: int) -> list[str]:
    """`count` distinct words of one length over a-z, in alphabetical order."""
    rng = random.Random(seed)
    length = 1
    while 26**length < 4 * count:  # room enough to draw distinct words quickly
        length += 1
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length)))
    return sorted(words)


def relabelling(texts: list[str], order: str, seed: int) -> dict[str, str]:
    """Lower-case word -> invented word, for every word of `texts` (a bijection)."""
    words = sorted({w.lower() for text in texts for w in WORD.findall(text)})
    invented = invented_words(len(words), seed)
    if order == "shuffle":
        random.Random(seed + 1).shuffle(invented)
    return dict(zip(words, invented))


def relabel(text: str, mapping: dict[str, str]) -> str:
    """Each word of `text` replaced by its invented word, with the original's capital (answers keep their case:
    "Bill" is a different answer class from "bill", and sorts before the lower-case ones)."""

    def replace(match: re.Match) -> str:
        word = match.group(0)
        invented = mapping[word.lower()]
        return invented.capitalize() if word[0].isupper() else invented

    return WORD.sub(replace, text)


def relabel_folder(source: Path, out: Path, order: str = "keep", seed: int = 0) -> dict[str, str]:
    """Write the relabelled copy of every qa*.txt file of `source` into `out`; returns the relabelling."""
    files = sorted(source.glob("qa*_*.txt"))
    if not files:
        raise SystemExit(f"--source: no bAbI files (qa*_*.txt) in {source}")
    texts = [path.read_text(encoding="utf-8") for path in files]
    mapping = relabelling(texts, order, seed)
    out.mkdir(parents=True, exist_ok=True)
    for path, text in zip(files, texts):
        temporary = out / f".{path.name}.tmp"
        temporary.write_text(relabel(text, mapping), encoding="utf-8")
        temporary.replace(out / path.name)
    return mapping


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="a folder of bAbI files (qa1_..._train.txt, ...)")
    parser.add_argument("--out", type=Path, required=True, help="the folder of the relabelled copy")
    parser.add_argument("--order", choices=["keep", "shuffle"], default="keep", help="see above")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mapping = relabel_folder(args.source, args.out, args.order, args.seed)
    print(f"wrote {args.out}: {len(mapping)} words relabelled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
