"""The registered model: an `mlflow.pyfunc` model answering requests with the trained DMNs of a version, for
any application.

One registered version holds what one run trained: a DMN per unit (a bAbI task, say), sharing a vocabulary.
Input is a DataFrame with the application's columns (bAbI: `story` as plain text, `question`) and its unit
column (`babi_task`), needed only when the version holds several units. Rows are answered in batches per
unit, sorted by size; masks make every answer the same as the row's answer alone.

A story is read whole, whatever its length (the training cut of a bAbI task does not apply to requests).
Words the unit's model never saw in training come back with the answer, and as a warning.

Output: one answer per row (the signature's column); with the inference parameter `details=True`, a
DataFrame of the answer, its probability, the unit that answered, the unknown words and the facts read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from dmn.apps import application
from dmn.checkpoint import load_checkpoint
from dmn.config import ModelConfig
from dmn.data.batching import make_batch
from dmn.data.vocab import Vocabulary
from dmn.errors import ConfigError

BATCH_SIZE = 128  # rows per forward pass (bench/serving_speed.py)


class UnknownWordsWarning(UserWarning):
    """The request holds words the answering model never saw in training."""


@dataclass
class Answer:
    answer: str | list[str]  # as the application renders it (a tagger: a tag per word)
    probability: float | list[float]  # of the answer (a sequence: of all its words); a tagger: per tag
    unit: int | str  # the model that answered (a bAbI task...)
    sentences: list[str]  # the facts the memory read: the whole story (a tagger: the words)
    gates: list[list[float]]  # (P, S): attention of each pass over `sentences`
    unknown_words: list[str]  # words of the request the unit's model never saw in training


class DMNModel(mlflow.pyfunc.PythonModel):
    """Answers requests of its application with the model of the requested unit."""

    def load_context(self, context) -> None:
        self.vocab = Vocabulary.load(context.artifacts["vocab"])
        self.models, self.meta, self.known = {}, {}, {}
        for key, path in context.artifacts.items():
            if key != "vocab":
                model, meta = load_checkpoint(path)
                unit = meta["unit"]
                self.models[unit], self.meta[unit] = model, meta
                # checkpoints written before the words were recorded: the shared vocabulary
                self.known[unit] = frozenset(meta.get("trained_words") or self.vocab.words)
        self.app = application(next(iter(self.meta.values()))["application"])

    def _model_for(self, unit) -> int | str:
        name = self.app.unit_name
        if _scalar(unit) and not _given(unit):  # no unit given
            if len(self.models) > 1:
                raise ConfigError(f"{name} is needed: this version holds {name} {sorted(self.models)}")
            return next(iter(self.models))
        typed = None
        if _scalar(unit) and not isinstance(unit, bool) and not (isinstance(unit, float) and not unit.is_integer()):
            try:  # 2.5 is not bAbI task 2, nor True task 1
                typed = self.app.unit_type(unit)
            except (TypeError, ValueError, OverflowError):
                pass
        if typed not in self.models:
            raise ConfigError(f"{name} {unit!r} is not in this version (has {sorted(self.models)})")
        return typed

    def answer(self, request: dict, unit=None) -> Answer:
        """One request row (the application's columns) -> its answer and the attention of every pass."""
        try:
            return self.answer_rows([request], [unit])[0]
        except ConfigError as error:  # one request: no row to name
            raise ConfigError(str(error).removeprefix("row 0: ")) from None

    @torch.no_grad()
    def answer_rows(self, requests: list[dict], units: list) -> list[Answer]:
        """Request rows -> their answers, batched per unit; ConfigError naming the row (counted from 0) and the
        column of a bad one. Warns (UnknownWordsWarning) once per row holding words its model never saw."""
        parsed = []
        for i, (request, unit) in enumerate(zip(requests, units, strict=True)):
            try:
                unit = self._model_for(unit)
                settings = self.app.serving_settings(self.meta[unit]["settings"])
                parsed.append((unit, self.app.parse_request(request, settings)))
            except ConfigError as error:
                raise ConfigError(f"row {i}: {error}") from None
        answers: list[Answer | None] = [None] * len(parsed)
        for unit in {unit for unit, _ in parsed}:
            rows = [i for i, (u, _) in enumerate(parsed) if u == unit]
            rows.sort(key=lambda i: _size(parsed[i][1]))  # similar sizes together: less padding
            for start in range(0, len(rows), BATCH_SIZE):
                chunk = rows[start : start + BATCH_SIZE]
                for i, answer in zip(chunk, self._answer_batch(unit, [parsed[i][1] for i in chunk])):
                    answers[i] = answer
        for i, answer in enumerate(answers):
            if answer.unknown_words:
                where = f"row {i}: " if len(answers) > 1 else ""
                words = ", ".join(answer.unknown_words)
                warnings.warn(f"{where}words the model never saw in training: {words}", UnknownWordsWarning, 3)
        return answers

    def _answer_batch(self, unit, rows: list[dict]) -> list[Answer]:
        meta = self.meta[unit]
        kind = ModelConfig(**meta["model_config"]).answer_kind
        settings = self.app.serving_settings(meta["settings"])
        batch = make_batch(self.app.encode(rows, self.vocab, settings, kind))
        output = self.models[unit](*batch.model_inputs())
        probabilities, ids = output.logits.softmax(-1).max(-1)  # (B, T) each
        answers = []
        for b, row in enumerate(rows):
            n_facts = int(batch.fact_mask[b].sum())
            length = n_facts if kind == "tags" else _answer_length(ids[b], kind)
            chosen = probabilities[b, :length]
            read = [w for fact in row["story_tokens"] for w in fact] + row["question_tokens"]
            answers.append(
                Answer(
                    answer=self.app.render_answer(ids[b, :length].tolist(), self.vocab, kind),
                    probability=chosen.tolist() if kind == "tags" else float(chosen.prod()),
                    unit=unit,
                    sentences=list(row["story"]),
                    gates=output.gates[b, :, :n_facts].tolist(),
                    unknown_words=sorted(set(read) - self.known[unit]),
                )
            )
        return answers

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list | pd.DataFrame:
        """One answer per row, as the application renders it (a string; a tagger's list of tags); with
        params={"details": True}, a DataFrame: answer, probability, the unit column, unknown_words, facts.

        A bad request raises MlflowException(INVALID_PARAMETER_VALUE) naming the column and the row: the
        scoring server answers 400 with that one line."""
        try:
            requests, units = self._requests(model_input)
            answers = self.answer_rows(requests, units)
        except ConfigError as error:
            raise MlflowException(str(error), INVALID_PARAMETER_VALUE) from None
        if not (params or {}).get("details", False):
            return [a.answer for a in answers]
        return pd.DataFrame(
            {
                "answer": [a.answer for a in answers],
                "probability": [a.probability for a in answers],
                self.app.unit_name: [a.unit for a in answers],
                "unknown_words": [a.unknown_words for a in answers],
                "facts": [len(a.sentences) for a in answers],
            }
        )

    def _requests(self, model_input: pd.DataFrame) -> tuple[list[dict], list]:
        """The request rows (their given cells) and units of `model_input`; ConfigError naming a missing column,
        or the column and row of an empty cell of a required one."""
        columns = [c.name for c in self.app.request_columns if c.name in model_input]
        missing = [c.name for c in self.app.request_columns if c.required and c.name not in model_input]
        if missing or not columns:
            names = ", ".join(c.name for c in self.app.request_columns)
            raise ConfigError(f"input columns: {', '.join(missing) or names} needed (the model reads {names})")
        requests = []
        for i, row in enumerate(model_input[columns].to_dict("records")):
            for column in self.app.request_columns:
                value = row.get(column.name)
                if column.required and not _given(value):
                    raise ConfigError(f"row {i}: {column.name}: empty (null); a {column.kind} is needed")
                if column.kind == "string" and _given(value) and not isinstance(value, str):
                    raise ConfigError(f"row {i}: {column.name}: a string is needed, got {type(value).__name__}")
            requests.append({key: value for key, value in row.items() if _given(value)})
        unit_name = self.app.unit_name
        units = list(model_input[unit_name]) if unit_name in model_input else [None] * len(model_input)
        return requests, units


def _size(row: dict) -> tuple[int, int]:
    return len(row["story_tokens"]), max((len(fact) for fact in row["story_tokens"]), default=0)


def _answer_length(ids: torch.Tensor, kind: str) -> int:
    """Positions of a class (1) or a word sequence up to and with its end word (id 0)."""
    if kind == "class":
        return 1
    ends = (ids == 0).nonzero()
    return int(ends[0]) + 1 if len(ends) else len(ids)


def _scalar(value) -> bool:
    """One value (numpy's scalars too), not a list, a mapping or an array."""
    return not isinstance(value, list | tuple | dict | set) and np.ndim(value) == 0


def _given(value) -> bool:
    """False for a missing cell (None, NaN, pandas' NA); a list or an array is given."""
    return not _scalar(value) or not pd.isna(value)
