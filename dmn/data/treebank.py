"""Readers of part-of-speech tagged text: Penn Treebank WSJ files (bracketed `.mrg` trees or tagged `.pos`
files) and CoNLL-U files (the XPOS column), each sentence a list of (word, tag).

Traces (`-NONE-`) are not words and are dropped. Splits: the NLTK 10 % sample of the WSJ (files wsj_0001-0199)
by file, as ../shared/data/pos/README.md gives it (0001-0159 train, 0160-0179 dev, 0180-0199 test); a full WSJ
by section, the standard split (00-18 train, 19-21 dev, 22-24 test); CoNLL-U by the split in its file name
(`en_ewt-ud-train.conllu`...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dmn import storage
from dmn.data.ptb import read_trees
from dmn.errors import DataError

TRACE = "-NONE-"
WSJ_FILE = re.compile(r"^wsj_(\d{4})\.(mrg|pos)$")
CONLLU_FILE = re.compile(r"^.*(train|dev|test).*\.conllu$")
CONLLU_COLUMNS = 10
SAMPLE_SPLIT = ((159, "train"), (179, "dev"), (199, "test"))  # the NLTK sample: last file number of each split
SECTION_SPLIT = ((18, "train"), (21, "dev"), (24, "test"))  # the full WSJ: last section of each split


@dataclass(frozen=True)
class TaggedSentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]
    line: int  # where the sentence starts in its file


def is_tagged_file(name: str) -> bool:
    return bool(WSJ_FILE.match(name) or CONLLU_FILE.match(name))


def split_files(names: list[str]) -> dict[str, list[str]]:
    """{split: file names} of a set of WSJ or CoNLL-U files; a WSJ `.mrg` file is read in place of the
    `.pos` file of the same number; a file of no split (a WSJ section past 24) is left out."""
    wsj = {}
    for name in sorted(names):
        match = WSJ_FILE.match(name)
        if match and (match.group(2) == "mrg" or f"wsj_{match.group(1)}.mrg" not in names):
            wsj[name] = int(match.group(1))
    splits: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    sample = all(number < 200 for number in wsj.values())
    for name, number in wsj.items():
        key, bounds = (number, SAMPLE_SPLIT) if sample else (number // 100, SECTION_SPLIT)
        split = next((split for last, split in bounds if key <= last), None)
        if split:
            splits[split].append(name)
    for name in sorted(names):
        match = CONLLU_FILE.match(name)
        if match:
            splits[match.group(1)].append(name)
    return splits


def read_tagged(path: str | Path) -> list[TaggedSentence]:
    """The sentences of one file, by its extension; DataError naming the file and line of bad input."""
    name = str(path)
    sentences = _read_mrg(path) if name.endswith(".mrg") else _read_pos(path) if name.endswith(".pos") else None
    if sentences is None:
        sentences = _read_conllu(path)
    return sentences


def _read_mrg(path) -> list[TaggedSentence]:
    sentences = []
    for line, tree in read_trees(path):
        leaves = [leaf for leaf in tree.leaves() if leaf.label != TRACE]
        if not leaves:
            raise DataError(path, "a sentence with no words", line)
        sentences.append(TaggedSentence(tuple(x.word for x in leaves), tuple(x.label for x in leaves), line))
    return sentences


def _read_pos(path) -> list[TaggedSentence]:
    """`word/TAG` tokens (a '/' inside a word is written '\\/'), NP chunks in [ ], sentences between blank
    lines, documents between lines of '='."""
    sentences, words, tags, start = [], [], [], 0
    with storage.open_text(path) as lines:
        for number, text in enumerate(lines, start=1):
            text = text.strip()
            if not text or text.startswith("======"):
                if words:
                    sentences.append(TaggedSentence(tuple(words), tuple(tags), start))
                words, tags = [], []
                continue
            for token in text.split():
                if token in ("[", "]"):
                    continue
                word, slash, tag = token.replace("\\/", "\0").rpartition("/")
                if not slash or not word or not tag:
                    raise DataError(path, f"token {token!r} has no tag (expected word/TAG)", number)
                if tag != TRACE:
                    start = start if words else number
                    words.append(word.replace("\0", "/"))
                    tags.append(tag.split("|")[0])  # an annotator's doubt 'JJ|VBN': the first
    if words:
        sentences.append(TaggedSentence(tuple(words), tuple(tags), start))
    return sentences


def _read_conllu(path) -> list[TaggedSentence]:
    """CoNLL-U: ten tab-separated columns per word; multiword tokens (`1-2`) and empty nodes (`8.1`) are not
    words of the sentence and are skipped, as UD's own tools do."""
    sentences, words, tags, start = [], [], [], 0
    with storage.open_text(path) as lines:
        for number, text in enumerate(lines, start=1):
            text = text.rstrip("\n").rstrip("\r")
            if not text.strip():
                if words:
                    sentences.append(TaggedSentence(tuple(words), tuple(tags), start))
                words, tags = [], []
                continue
            if text.startswith("#"):
                continue
            columns = text.split("\t")
            if len(columns) != CONLLU_COLUMNS:
                raise DataError(path, f"{len(columns)} tab-separated columns, CoNLL-U has {CONLLU_COLUMNS}", number)
            if "-" in columns[0] or "." in columns[0]:
                continue
            if columns[4] in ("", "_"):
                raise DataError(path, f"word {columns[1]!r} has no XPOS tag (column 5)", number)
            start = start if words else number
            words.append(columns[1])
            tags.append(columns[4])
    if words:
        sentences.append(TaggedSentence(tuple(words), tuple(tags), start))
    return sentences
