"""The registered model: an `mlflow.pyfunc` model answering plain-text stories with trained DMN+ models.

One registered version holds what one run trained: a DMN+ per bAbI task, sharing a vocabulary. Input is a
DataFrame with `story` (plain text: a sentence per line, or a paragraph of sentences; bAbI line numbers
are accepted and dropped), `question`, and `babi_task` (needed only when the version holds several).
Words the model never saw are read as the unknown word: the answer comes with a warning naming them.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import mlflow.pyfunc
import pandas as pd
import torch

from dmn.checkpoint import load_checkpoint
from dmn.data.batching import encode_stories, make_batch
from dmn.data.vocab import Vocabulary, tokenize
from dmn.errors import ConfigError

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
LINE_NUMBER = re.compile(r"^\s*\d+\s+")


class UnknownWordsWarning(UserWarning):
    """The story or question holds words absent from the model's vocabulary."""


def split_story(text: str) -> list[str]:
    """Plain text -> sentences: one per line, and lines split after '.', '!' or '?'."""
    sentences = []
    for line in text.splitlines():
        line = LINE_NUMBER.sub("", line).strip()
        sentences.extend(s.strip() for s in SENTENCE_END.split(line) if tokenize(s))
    return sentences


@dataclass
class Answer:
    answer: str
    babi_task: int
    sentences: list[str]  # the sentences the memory read (after the model's story cut)
    gates: list[list[float]]  # (P, S): attention of each pass over `sentences`
    unknown_words: list[str]


class BabiQAModel(mlflow.pyfunc.PythonModel):
    """Answers bAbI-style questions about plain-text stories."""

    def load_context(self, context) -> None:
        self.vocab = Vocabulary.load(context.artifacts["vocab"])
        self.models = {}
        self.sentence_limits = {}
        for key, path in context.artifacts.items():
            if key.startswith("babi_task_"):
                model, meta = load_checkpoint(path)
                self.models[meta["babi_task"]] = model
                limits = meta["train_config"]["max_sentences_by_task"]
                self.sentence_limits[meta["babi_task"]] = limits.get(
                    meta["babi_task"], meta["train_config"]["max_sentences"]
                )

    def _model_for(self, babi_task) -> int:
        if babi_task is None or pd.isna(babi_task):
            if len(self.models) > 1:
                raise ConfigError(f"babi_task is needed: this version holds bAbI tasks {sorted(self.models)}")
            return next(iter(self.models))
        if int(babi_task) not in self.models:
            raise ConfigError(f"babi_task {int(babi_task)} is not in this version (has {sorted(self.models)})")
        return int(babi_task)

    @torch.no_grad()
    def answer(self, story: str, question: str, babi_task: int | None = None) -> Answer:
        babi_task = self._model_for(babi_task)
        sentences = split_story(story)
        if not sentences:
            raise ConfigError("story: no sentence with words in it")
        if not tokenize(question):
            raise ConfigError("question: no words in it")
        sentences = sentences[-self.sentence_limits[babi_task] :]
        row = {"story_tokens": [tokenize(s) for s in sentences], "question_tokens": tokenize(question)}
        unknown = self.vocab.unknown_words([w for s in row["story_tokens"] for w in s] + row["question_tokens"])
        if unknown:
            warnings.warn(f"words the model never saw, read as unknown: {', '.join(unknown)}", UnknownWordsWarning, 2)
        batch = make_batch(encode_stories([row], self.vocab, len(sentences)))
        logits, gates = self.models[babi_task](*batch.model_inputs())  # (1, A), (1, P, S)
        return Answer(self.vocab.answers[int(logits.argmax(-1))], babi_task, sentences, gates[0].tolist(), unknown)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        tasks = model_input["babi_task"] if "babi_task" in model_input else [None] * len(model_input)
        return [
            self.answer(story, question, babi_task).answer
            for story, question, babi_task in zip(model_input["story"], model_input["question"], tasks)
        ]
