"""Word and answer vocabularies, saved as JSON beside the tokenised data and inside every model."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from dmn import storage

PAD, UNK, END = "<pad>", "<unk>", "<end>"
UNKNOWN_WORD = 1  # the id of every word the vocabulary lacks
TOKEN = re.compile(r"[^\W_]+")  # runs of Unicode letters and digits


def tokenize(text: str) -> list[str]:
    """Lower-case words of every script, punctuation dropped ('Where is José?' -> ['where', 'is', 'josé']).

    The text is NFC-normalised first, so a letter typed as a base and a combining accent is the same word as
    its precomposed form."""
    return TOKEN.findall(unicodedata.normalize("NFC", text).lower())


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]  # id -> word; 0 is padding, 1 an unknown word
    answers: tuple[str, ...]  # id -> answer class (a class answer module) or tag (a tagger)
    answer_words: tuple[str, ...] = (END,)  # id -> answer word, 0 the end word (a sequence answer module)

    @classmethod
    def build(cls, word_lists, answers, answer_word_lists=()) -> Vocabulary:
        words = sorted({w for ws in word_lists for w in ws} - {PAD, UNK})
        answer_words = sorted({w for ws in answer_word_lists for w in ws} - {END})
        return cls((PAD, UNK, *words), tuple(sorted(set(answers))), (END, *answer_words))

    def __post_init__(self):
        object.__setattr__(self, "_word_ids", {w: i for i, w in enumerate(self.words)})
        object.__setattr__(self, "_answer_ids", {a: i for i, a in enumerate(self.answers)})
        object.__setattr__(self, "_answer_word_ids", {a: i for i, a in enumerate(self.answer_words)})

    def word_ids(self, tokens: list[str]) -> list[int]:
        return [self._word_ids.get(t, UNKNOWN_WORD) for t in tokens]

    def unknown_words(self, tokens: list[str]) -> list[str]:
        return sorted({t for t in tokens if t not in self._word_ids})

    def answer_id(self, answer: str) -> int:
        """-1 for an answer never seen in training (always counted wrong)."""
        return self._answer_ids.get(answer, -1)

    def answer_word_ids(self, words: list[str]) -> list[int]:
        """The words of a sequence answer and the end word; -1 for a word never seen in training."""
        return [self._answer_word_ids.get(w, -1) for w in words] + [0]

    def answer_size(self, kind: str) -> int:
        """Outputs of the answer module: answer words with the end ('sequence'), else answer classes or tags."""
        return len(self.answer_words) if kind == "sequence" else len(self.answers)

    def save(self, location: str | Path) -> None:
        data = {"words": self.words, "answers": self.answers, "answer_words": self.answer_words}
        storage.write_bytes(location, json.dumps(data).encode())

    @classmethod
    def load(cls, location: str | Path) -> Vocabulary:
        data = json.loads(storage.read_text(location))
        return cls(tuple(data["words"]), tuple(data["answers"]), tuple(data.get("answer_words", [END])))
