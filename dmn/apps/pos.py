"""Part-of-speech tagging (Kumar et al. 2016, section 4.4): the input module reads the sentence word by word,
each word a fact; the question is the fixed "what are the tags"; the answer module gives a tag at every
fact from that fact and the final memory (dmn/models/dmn.py's `FactTagger`).

Data: Penn Treebank WSJ files (the NLTK sample bundled in data/, or a user's full WSJ) or CoNLL-U files; the
splits are dmn/data/treebank.py's. Words are kept as written (case tells a proper noun), every Unicode letter
kept. Accuracy is per token; the report adds the accuracy on words the vocabulary lacks and per sentence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from dmn.apps.base import Application, Column, RunConfig, only_answer
from dmn.config import ModelConfig, TrainConfig
from dmn.data.batching import IGNORE, Examples, encode_facts
from dmn.data.files import RawFiles, files_fingerprint, ingest_files
from dmn.data.parquet import TokenisedData, is_published, publish, tokens_folder, train_rows
from dmn.data.ptb import request_tokens
from dmn.data.treebank import is_tagged_file, read_tagged, split_files
from dmn.data.vocab import Vocabulary
from dmn.errors import DataError

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "ptb-sample.zip"
QUESTION = ("what", "are", "the", "tags")  # the fixed question (Kumar et al. 2016)
TAGSETS = ("ptb",)
SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("file", pa.string()),
        ("line", pa.int32()),  # where the sentence starts in its file
        ("words", pa.list_(pa.string())),
        ("tags", pa.list_(pa.string())),
    ]
)


class PosRunConfig(RunConfig):
    """Everything one `dmn run pos` needs; also the parameters of the Prefect flow."""

    tagsets: list[Literal["ptb"]] = Field(
        list(TAGSETS),
        description="Tag sets, one model each: 'ptb', the Penn Treebank's tags (WSJ files, or CoNLL-U's XPOS).",
    )
    source: str = Field(
        "bundled",
        description="'bundled' (NLTK's 10 % WSJ sample in data/), a folder of WSJ .mrg/.pos files (sections "
        "00-24) or of CoNLL-U files (*train*.conllu, *dev*.conllu, *test*.conllu; without a dev file the last "
        "tenth of the training sentences validates; test files alone: `dmn evaluate`), or an archive path or URL.",
    )
    source_sha256: str | None = Field(None, description="Expected sha256 of an archive source.")
    model_name: str = Field("dmn-pos", description="Registered model name in MLflow.")
    model: ModelConfig = Field(
        ModelConfig(passes=1, answer="tags"),
        description="The DMN (the answer is a tag per word).",
    )
    train: TrainConfig = Field(
        TrainConfig(max_epochs=60, patience=8, batch_size=32, bucket_by_length=True),
        description="Training (an epoch of the WSJ sample is about 3,400 sentences).",
    )

    word_features: bool = Field(
        True,
        description="Each word's fact also reads the word in lower case, its last three letters and its shape (Xx, "
        "d, x-x...), so that a word never seen in training still shows its suffix and capitals.",
    )

    @model_validator(mode="after")
    def _tag_answer(self) -> PosRunConfig:
        self.model = only_answer(self.model, "tags", "tagging answers with a tag per word")
        return self


def ingest(config: PosRunConfig, data_root: str) -> RawFiles:
    """The source's tagged files; a training run needs train and test files among them (checked once they are read),
    an evaluation (`dmn evaluate`) test files alone."""
    return ingest_files(
        config.source,
        data_root,
        "pos",
        is_tagged_file,
        BUNDLED,
        config.source_sha256,
        lambda files: _check(config, files),
    )


def _check(config: PosRunConfig, files: dict[str, Path]) -> None:
    """DataError where no file belongs to a split (before anything is stored)."""
    if not any(split_files(list(files)).values()):
        raise DataError(config.source, "no file of a train, dev or test split there (see `dmn run pos --help`)")


def tokenise(raw: RawFiles, data_root: str) -> TokenisedData:
    """Read every tagged file; publish Parquet (a partition per tag set), vocabulary and manifest."""
    target = tokens_folder(data_root, "pos", raw.digest, __name__)
    if not is_published(target):
        files = raw.files()
        rows = [
            {"split": split, "file": name, "line": s.line, "words": list(s.words), "tags": list(s.tags)}
            for split, names in split_files(list(files)).items()
            for name in names
            for s in read_tagged(files[name])
        ]
        tables = {tagset: pa.Table.from_pylist(rows, schema=SCHEMA) for tagset in TAGSETS}
        train = train_rows(tables)
        words = [word for t in train for sentence in t["words"].to_pylist() for word in sentence]
        vocab = Vocabulary.build(
            [list(QUESTION), words, [feature for word in set(words) for feature in word_features(word)]],
            [tag for t in train for tags in t["tags"].to_pylist() for tag in tags],
        )
        publish(target, "tagset", tables, vocab, {"digest": raw.digest, "tagsets": list(TAGSETS)})
    return TokenisedData(target, raw.digest, "tagset", "tag set", TAGSETS)


def word_features(word: str) -> list[str]:
    """The feature tokens of a word: its lower case, its last three letters and its shape, capitals written X,
    other letters x, digits d, each run once ('Vinken' -> ['=vinken', '~ken', '^Xx'], 'Amélie' -> ['=amélie',
    '~lie', '^Xx'], '1,000' -> ['=1,000', '~000', '^d,d'])."""
    kinds = "".join("X" if c.isupper() else "x" if c.isalpha() else "d" if c.isdigit() else c for c in word)
    return [f"={word.lower()}", f"~{word[-3:].lower()}", "^" + re.sub(r"(.)\1+", r"\1", kinds)]


def settings(config: PosRunConfig, tagset: str) -> dict:
    return {"word_features": config.word_features}


def encode(rows: list[dict], vocab: Vocabulary, settings: dict, answer_kind: str) -> Examples:
    """Each word a fact: the word, and with `settings["word_features"]` its feature tokens after it (the input
    module reads a fact's tokens as it reads a sentence's words); the fixed question; a tag per word (request
    rows have no tags and get no target)."""
    targets = None
    if all("tags" in row for row in rows):
        targets = [[vocab.answer_id(tag) for tag in row["tags"]] for row in rows]
    features = settings.get("word_features", False)
    facts = [[[word, *word_features(word)] if features else [word] for word in row["words"]] for row in rows]
    return encode_facts(facts, QUESTION, vocab, targets)


def parse_request(request: dict, settings: dict) -> dict:
    """{'sentence': plain text} (PTB-tokenised) or {'tokens': [word, ...]} -> a token row; ConfigError naming
    the column when the sentence has no words."""
    words = request_tokens(request)
    return {"story": words, "story_tokens": [[w] for w in words], "question_tokens": list(QUESTION), "words": words}


def render_answer(ids: list[int], vocab: Vocabulary, answer_kind: str) -> list[str]:
    """Tag ids of a sentence's words -> the tags."""
    return [vocab.answers[i] for i in ids if i != IGNORE]


def anchors(config: PosRunConfig) -> list[str]:
    """../shared/docs/PAPERS.md: U not checked."""
    return [
        "DMN (Kumar et al. 2016): 97.56 % on the full WSJ test sections 22-24 (U; possibly an ensemble); this "
        "run's data may be the 10 % sample, whose test files are not those sections"
    ]


APPLICATION = Application(
    name="pos",
    module=__name__,
    unit_name="tagset",
    unit_title="tag set",
    unit_type=str,
    config_type=PosRunConfig,
    unit_field="tagsets",
    describe=lambda config: "part-of-speech tagging (Penn Treebank tags)",
    source_fingerprint=lambda config: files_fingerprint(config.source, is_tagged_file, BUNDLED, config.source_sha256),
    ingest=ingest,
    tokenise=tokenise,
    settings=settings,
    encode=encode,
    render_answer=render_answer,
    parse_request=parse_request,
    request_columns=(Column("sentence", required=False), Column("tokens", "strings", required=False)),
    output=Column("tags", "strings"),
    example_request=lambda row: {"tokens": row["words"]},
    ask_hint='--sentence "The company said it expects higher sales."',
    anchors=anchors,
    per_class=True,
    pass_error=None,
    first_max_error=0.1,  # better than the most frequent tag of each word (about 13 % error)
    audit_view=lambda row: (row["words"], " ".join(QUESTION), " ".join(row["tags"])),
)
