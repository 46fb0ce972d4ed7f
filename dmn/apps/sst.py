"""Sentiment on the Stanford Sentiment Treebank (Kumar et al. 2016, section 4.3): one DMN per granularity
(fine: 5 classes, binary: 2). The input module reads the sentence word by word, each word a fact; the question
is the fixed "what is the sentiment"; the answer is one class.

Training takes every distinct phrase of the training trees (`phrases`), validation and test the sentences of
dev and test (the published splits). Tokens are the trees' own, lower-cased, every Unicode letter kept.
Reader: dmn/data/sst.py; sources: dmn/data/files.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from dmn.apps.base import Application, Column, RunConfig, only_answer
from dmn.config import ModelConfig, TrainConfig
from dmn.data.batching import Examples, encode_facts
from dmn.data.files import RawFiles, files_fingerprint, ingest_files
from dmn.data.parquet import TokenisedData, is_published, publish, tokens_folder, train_rows
from dmn.data.ptb import request_tokens
from dmn.data.sst import GRANULARITIES, SPLIT_FILES, phrases, read_sentiment_trees
from dmn.data.vocab import Vocabulary
from dmn.errors import DataError

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "sst-trees.tar.xz"
OFFICIAL_URL = "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip"
QUESTION = ("what", "is", "the", "sentiment")  # the fixed question (Kumar et al. 2016)
SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("line", pa.int32()),  # line of the phrase's tree in its file
        ("root", pa.bool_()),  # a whole sentence; False: a phrase of a training tree
        ("tokens", pa.list_(pa.string())),  # lower-cased
        ("sentence", pa.string()),  # the tokens as written, joined by spaces
        ("label", pa.string()),  # "0".."4" (fine) or "0"/"1" (binary)
    ]
)


def _wanted(name: str) -> bool:
    return name in SPLIT_FILES.values()


class SstRunConfig(RunConfig):
    """Everything one `dmn run sst` needs; also the parameters of the Prefect flow."""

    granularities: list[Literal["fine", "binary"]] = Field(
        list(GRANULARITIES),
        description="Which to train: 'fine' (5 classes) and/or 'binary' (neutral dropped), one model each.",
    )
    source: str = Field(
        "bundled",
        description="'bundled' (the SST trees in data/), a folder holding train.txt, dev.txt and test.txt, or an "
        f"archive path or URL of them (e.g. {OFFICIAL_URL}).",
    )
    source_sha256: str | None = Field(None, description="Expected sha256 of an archive source.")
    model_name: str = Field("dmn-sst", description="Registered model name in MLflow.")
    model: ModelConfig = Field(
        ModelConfig(passes=2, answer="class"),
        description="The DMN (Kumar et al. 2016 found 2 passes best for sentiment; the answer is one class).",
    )
    train: TrainConfig = Field(
        TrainConfig(max_epochs=30, patience=5, bucket_by_length=True),
        description="Training (an epoch of phrase-level training is about 160,000 phrases: fewer, longer epochs); the "
        "weights as trained are kept (a moving average of them lost 1.5 points on fine: README, Sentiment and "
        "part-of-speech tagging).",
    )
    phrases: bool = Field(
        True, description="Train on every distinct phrase of the training trees (Socher et al.); off: sentences only."
    )

    @field_validator("granularities")
    @classmethod
    def _some(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one granularity ('fine' or 'binary') is needed")
        return sorted(set(value), key=GRANULARITIES.index)

    @model_validator(mode="after")
    def _class_answer(self) -> SstRunConfig:
        self.model = only_answer(self.model, "class", "sentiment is one class")
        return self


def ingest(config: SstRunConfig, data_root: str) -> RawFiles:
    return ingest_files(
        config.source, data_root, "sst", _wanted, BUNDLED, config.source_sha256, lambda files: _check(config, files)
    )


def _check(config: SstRunConfig, files: dict[str, Path]) -> None:
    """DataError where a split's tree file is missing (before anything is stored)."""
    missing = sorted(set(SPLIT_FILES.values()) - set(files))
    if missing:
        raise DataError(config.source, f"SST source lacks {', '.join(missing)}")


def tokenise(raw: RawFiles, data_root: str) -> TokenisedData:
    """Read the three tree files; publish Parquet (a partition per granularity), vocabulary and manifest."""
    target = tokens_folder(data_root, "sst", raw.digest, __name__)
    if not is_published(target):
        files = raw.files()
        trees = {split: read_sentiment_trees(files[name]) for split, name in SPLIT_FILES.items()}
        tables = {granularity: _table(trees, granularity) for granularity in GRANULARITIES}
        train = train_rows(tables)
        vocab = Vocabulary.build(
            [list(QUESTION), *(tokens for t in train for tokens in t["tokens"].to_pylist())],
            [label for t in train for label in t["label"].to_pylist()],
        )
        publish(target, "granularity", tables, vocab, {"digest": raw.digest, "granularities": list(GRANULARITIES)})
    return TokenisedData(target, raw.digest, "granularity", "SST", GRANULARITIES)


def _table(trees: dict, granularity: str) -> pa.Table:
    rows = [
        {
            "split": split,
            "line": phrase.line,
            "root": phrase.root,
            "tokens": [token.lower() for token in phrase.tokens],
            "sentence": " ".join(phrase.tokens),
            "label": phrase.label,
        }
        for split, split_trees in trees.items()
        for phrase in phrases(split_trees, granularity, all_phrases=split == "train")
    ]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def settings(config: SstRunConfig, granularity: str) -> dict:
    return {"phrases": config.phrases}


def encode(rows: list[dict], vocab: Vocabulary, settings: dict, answer_kind: str) -> Examples:
    """Each word a fact of one word; the fixed question; the label as a class (phrases dropped unless
    `settings["phrases"]`; request rows have no label and get no target)."""
    rows = [row for row in rows if row.get("root", True) or settings["phrases"]]
    targets = None if any("label" not in row for row in rows) else [[vocab.answer_id(row["label"])] for row in rows]
    return encode_facts([[[token] for token in row["tokens"]] for row in rows], QUESTION, vocab, targets)


def parse_request(request: dict, settings: dict) -> dict:
    """{'sentence': plain text} (PTB-tokenised) or {'tokens': [word, ...]} -> a token row, lower-cased as
    training was; ConfigError naming the column when the sentence has no words."""
    tokens = request_tokens(request)
    lowered = [token.lower() for token in tokens]
    return {
        "story": tokens,
        "story_tokens": [[t] for t in lowered],
        "question_tokens": list(QUESTION),
        "tokens": lowered,
    }


def render_answer(ids: list[int], vocab: Vocabulary, answer_kind: str) -> str:
    return vocab.answers[ids[0]]


def anchors(config: SstRunConfig) -> list[str]:
    """Published SST results, on the test sentences (../shared/docs/PAPERS.md: V checked, U not checked)."""
    return [
        "DMN (Kumar et al. 2016): 52.1 % fine-grained, 88.6 % binary (U)",
        "Tree-LSTM (Tai et al. 2015): 51.0 % fine-grained, 88.0 % binary (V)",
    ]


APPLICATION = Application(
    name="sst",
    module=__name__,
    unit_name="granularity",
    unit_title="SST",
    unit_type=str,
    config_type=SstRunConfig,
    unit_field="granularities",
    describe=lambda config: "Stanford Sentiment Treebank" + (" (phrases)" if config.phrases else " (sentences)"),
    source_fingerprint=lambda config: files_fingerprint(config.source, _wanted, BUNDLED, config.source_sha256),
    ingest=ingest,
    tokenise=tokenise,
    settings=settings,
    encode=encode,
    render_answer=render_answer,
    parse_request=parse_request,
    request_columns=(Column("sentence", required=False), Column("tokens", "strings", required=False)),
    output=Column("label"),
    example_request=lambda row: {"sentence": row["sentence"]},
    ask_hint='--sentence "A fine film."',
    anchors=anchors,
    per_class=True,
    pass_error=None,
    first_max_error=0.6,  # fine-grained (5 classes) near 50 % error is a usable model
    audit_view=lambda row: (row["sentence"].split(" "), " ".join(QUESTION), row["label"]),
)
