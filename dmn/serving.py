"""The registered model: an `mlflow.pyfunc` model answering requests with the trained DMNs of a version, for
any application.

One registered version holds what one run trained: a DMN per unit (a bAbI task, say), sharing a vocabulary.
Input is a DataFrame with the application's columns (bAbI: `story` as plain text, `question`) and its unit
column (`babi_task`), needed only when the version holds several units. Words the model never saw are read
as the unknown word: the answer comes with a warning naming them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import mlflow.pyfunc
import pandas as pd
import torch

from dmn.apps import application
from dmn.checkpoint import load_checkpoint
from dmn.config import ModelConfig
from dmn.data.batching import make_batch
from dmn.data.vocab import Vocabulary
from dmn.errors import ConfigError


class UnknownWordsWarning(UserWarning):
    """The request holds words absent from the model's vocabulary."""


@dataclass
class Answer:
    answer: str
    unit: int | str
    sentences: list[str]  # the facts the memory read (after the unit's story cut)
    gates: list[list[float]]  # (P, S): attention of each pass over `sentences`
    unknown_words: list[str]


class DMNModel(mlflow.pyfunc.PythonModel):
    """Answers requests of its application with the model of the requested unit."""

    def load_context(self, context) -> None:
        self.vocab = Vocabulary.load(context.artifacts["vocab"])
        self.models, self.meta = {}, {}
        for key, path in context.artifacts.items():
            if key != "vocab":
                model, meta = load_checkpoint(path)
                self.models[meta["unit"]], self.meta[meta["unit"]] = model, meta
        self.app = application(next(iter(self.meta.values()))["application"])

    def _model_for(self, unit) -> int | str:
        name = self.app.unit_name
        if unit is None or pd.isna(unit):
            if len(self.models) > 1:
                raise ConfigError(f"{name} is needed: this version holds {name} {sorted(self.models)}")
            return next(iter(self.models))
        if self.app.unit_type(unit) not in self.models:
            raise ConfigError(f"{name} {unit} is not in this version (has {sorted(self.models)})")
        return self.app.unit_type(unit)

    @torch.no_grad()
    def answer(self, request: dict, unit=None) -> Answer:
        """One request row (the application's columns) -> its answer and the attention of every pass."""
        unit = self._model_for(unit)
        row = self.app.parse_request(request)
        meta = self.meta[unit]
        kind = ModelConfig(**meta["model_config"]).answer_kind
        output = self.models[unit](
            *make_batch(self.app.encode([row], self.vocab, meta["settings"], kind)).model_inputs()
        )
        gates = output.gates[0]  # (P, S): S, the facts the model read after the unit's story cut
        read = [w for s in row["story_tokens"][-gates.size(-1) :] for w in s] + row["question_tokens"]
        unknown = self.vocab.unknown_words(read)
        if unknown:
            warnings.warn(f"words the model never saw, read as unknown: {', '.join(unknown)}", UnknownWordsWarning, 2)
        text = self.app.render_answer(output.logits.argmax(-1)[0].tolist(), self.vocab, kind)
        return Answer(text, unit, row["story"][-gates.size(-1) :], gates.tolist(), unknown)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list:
        """One answer per row, as the application renders it (a string; a tagger's list of tags)."""
        columns = [c.name for c in self.app.request_columns if c.name in model_input]
        missing = [c.name for c in self.app.request_columns if c.required and c.name not in model_input]
        if missing or not columns:
            names = ", ".join(c.name for c in self.app.request_columns)
            raise ConfigError(f"input columns: {', '.join(missing) or names} needed (the model reads {names})")
        units = model_input[self.app.unit_name] if self.app.unit_name in model_input else [None] * len(model_input)
        requests = [
            {key: value for key, value in row.items() if _given(value)}
            for row in model_input[columns].to_dict("records")
        ]
        return [self.answer(request, unit).answer for request, unit in zip(requests, units)]


def _given(value) -> bool:
    """False for a missing cell (None or NaN) of an optional column."""
    return value is not None and not (isinstance(value, float) and value != value)
