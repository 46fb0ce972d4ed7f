"""Word and answer vocabularies, saved as JSON beside the tokenised data and inside every model."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from dmn import storage

PAD, UNK = "<pad>", "<unk>"
TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case words; punctuation dropped ('Where is Mary?' -> ['where', 'is', 'mary'])."""
    return TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]  # id -> word; 0 is padding, 1 an unknown word
    answers: tuple[str, ...]  # id -> answer class

    @classmethod
    def build(cls, word_lists, answers) -> Vocabulary:
        words = sorted({w for ws in word_lists for w in ws} - {PAD, UNK})
        return cls((PAD, UNK, *words), tuple(sorted(set(answers))))

    def __post_init__(self):
        object.__setattr__(self, "_word_ids", {w: i for i, w in enumerate(self.words)})
        object.__setattr__(self, "_answer_ids", {a: i for i, a in enumerate(self.answers)})

    def word_ids(self, tokens: list[str]) -> list[int]:
        return [self._word_ids.get(t, 1) for t in tokens]

    def unknown_words(self, tokens: list[str]) -> list[str]:
        return sorted({t for t in tokens if t not in self._word_ids})

    def answer_id(self, answer: str) -> int:
        """-1 for an answer never seen in training (always counted wrong)."""
        return self._answer_ids.get(answer, -1)

    def save(self, location: str | Path) -> None:
        storage.write_bytes(location, json.dumps({"words": self.words, "answers": self.answers}).encode())

    @classmethod
    def load(cls, location: str | Path) -> Vocabulary:
        data = json.loads(storage.read_text(location))
        return cls(tuple(data["words"]), tuple(data["answers"]))
