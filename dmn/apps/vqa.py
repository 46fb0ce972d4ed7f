"""Visual question answering (Xiong et al. 2016, DMN+ Sec. 3.2): the story is an image, its facts the image's
regions read by the visual input module (dmn/models/visual.py); the question module, episodic memory and
answer module are the text DMN's. The answer is one class.

Data: SHAPES (Andreas et al. 2016; bundled in data/): 30x30 images of a 3x3 grid of shapes and yes/no questions;
the regions are the grid's cells. Splits: train on train.small and val less its last VALID_HELD_BACK
examples, validate on those, test on test. Images go into Parquet as raw bytes with their shape and dtype.
Reader: dmn/data/shapes.py; images: dmn/data/images.py.
"""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from dmn.apps.base import Application, Column, RunConfig, only_answer
from dmn.config import ModelConfig, TrainConfig
from dmn.data.batching import Examples, encode_images
from dmn.data.files import RawFiles, files_fingerprint, ingest_files
from dmn.data.images import from_cells, image_regions, png_bytes, read_image, snake_order, to_cells
from dmn.data.parquet import TokenisedData, is_published, publish, tokens_folder, train_rows
from dmn.data.shapes import SUFFIXES, read_shapes_split
from dmn.data.vocab import Vocabulary, tokenize
from dmn.errors import ConfigError, DataError

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "shapes.tar.xz"
DATASETS = ("shapes",)
SPLITS = {"train": ("train.small", "val"), "test": ("test",)}  # SHAPES files of each split (dev: see below)
VALID_HELD_BACK = 224  # the last val examples: the validation split (the rest of val trains)
IMAGE_SHAPE = (30, 30, 3)
GRID = 3  # SHAPES draws a 3x3 grid of shapes: a region per cell
COLOURS = ("red", "green", "blue")  # SHAPES' colours are pure: one RGB channel each
MIRRORED = {"left": "right", "right": "left", "left_of": "right_of", "right_of": "left_of"}
SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("file", pa.string()),  # the SHAPES split file the example comes from
        ("line", pa.int32()),  # its line in the text files (1-based) and index + 1 in the images
        ("question", pa.string()),
        ("question_tokens", pa.list_(pa.string())),
        ("layout", pa.string()),  # the question as a module layout, "(is green (left_of red))"
        ("question_type", pa.string()),  # the layout's first word, "is"
        ("answer", pa.string()),
        ("image", pa.binary()),  # raw pixels, image_shape and image_dtype tell how to read them
        ("image_shape", pa.list_(pa.int32())),
        ("image_dtype", pa.string()),
    ]
)


class VqaRunConfig(RunConfig):
    """Everything one `dmn run vqa` needs; also the parameters of the Prefect flow."""

    reads_images: ClassVar[bool] = True

    datasets: list[Literal["shapes"]] = Field(
        list(DATASETS), description="Visual QA data sets, one model each: 'shapes' (SHAPES, 3x3 grids of shapes)."
    )
    source: str = Field(
        "bundled",
        description="'bundled' (SHAPES train.small, val and test in data/), a folder holding SHAPES' "
        "<split>.input.npy, .query_str.txt, .query and .output files, or an archive path or URL of them.",
    )
    source_sha256: str | None = Field(None, description="Expected sha256 of an archive source.")
    model_name: str = Field("dmn-vqa", description="Registered model name in MLflow.")
    model: ModelConfig = Field(
        ModelConfig(answer="class", input="regions"),
        description="The DMN (the visual input module reads the image's regions; the answer is one class).",
    )
    train: TrainConfig = Field(
        TrainConfig(batch_size=64, max_epochs=80, patience=12),
        description="Training (an epoch of SHAPES train.small and most of val is 1,440 examples, 12 times that "
        "with `augment`).",
    )
    augment: bool = Field(
        True,
        description="Also train on each example mirrored left-right (its question's 'left' and 'right' swapped) "
        "and with its colours permuted (red, green and blue in the image and in the question alike): 12 "
        "examples for each one, every answer unchanged.",
    )

    @model_validator(mode="after")
    def _class_answer(self) -> VqaRunConfig:
        self.model = only_answer(self.model, "class", "a visual QA answer is one class")
        return self


def _wanted(name: str) -> bool:
    return any(name == f"{split}{suffix}" for files in SPLITS.values() for split in files for suffix in SUFFIXES)


def ingest(config: VqaRunConfig, data_root: str) -> RawFiles:
    raw = ingest_files(config.source, data_root, "shapes", _wanted, BUNDLED, config.source_sha256)
    needed = {f"{split}{suffix}" for files in SPLITS.values() for split in files for suffix in SUFFIXES}
    missing = sorted(needed - set(raw.files()))
    if missing:
        raise DataError(config.source, f"SHAPES source lacks {', '.join(missing)}")
    return raw


def tokenise(raw: RawFiles, data_root: str) -> TokenisedData:
    """Read the SHAPES splits; publish Parquet (images as bytes, shape and dtype), vocabulary and manifest."""
    target = tokens_folder(data_root, "shapes", raw.digest, __name__)
    if not is_published(target):
        files = raw.files()
        rows = []
        for split, names in SPLITS.items():
            for name in names:
                for row in read_shapes_split(files, name):
                    if row["image_array"].shape != IMAGE_SHAPE:
                        raise DataError(
                            files[f"{name}.input.npy"],
                            f"images of {row['image_array'].shape}; SHAPES' are {IMAGE_SHAPE}",
                        )
                    rows.append({"split": split, "file": name, **row, **to_cells(row.pop("image_array"))})
        val = [i for i, row in enumerate(rows) if row["file"] == "val"]
        for i in val[-VALID_HELD_BACK:]:
            rows[i]["split"] = "dev"
        tables = {"shapes": pa.Table.from_pylist(rows, schema=SCHEMA)}
        train = train_rows(tables)
        vocab = Vocabulary.build(
            [tokens for t in train for tokens in t["question_tokens"].to_pylist()] + [list(COLOURS), ["right", "left"]],
            [answer for t in train for answer in t["answer"].to_pylist()],
        )
        publish(target, "dataset", tables, vocab, {"digest": raw.digest, "datasets": list(DATASETS)})
    return TokenisedData(target, raw.digest, "dataset", "data set", DATASETS)


def settings(config: VqaRunConfig, dataset: str) -> dict:
    return {"image_shape": list(IMAGE_SHAPE), "grid": GRID, "augment": config.augment}


def region_names(grid: int) -> list[str]:
    """The regions as facts are named in answers and reports: 'row 1, column 3', in snake order."""
    return [f"row {r + 1}, column {c + 1}" for r, c in snake_order(grid)]


def encode(rows: list[dict], vocab: Vocabulary, settings: dict, answer_kind: str) -> Examples:
    """Images -> their regions (N, g*g, C, h, w) uint8 in snake order; questions -> ids; answers -> a class
    (requests have no answer and get no target)."""
    regions = image_regions([from_cells(row) for row in rows], settings["grid"])
    targets = None if any("answer" not in row for row in rows) else [[vocab.answer_id(r["answer"])] for r in rows]
    return encode_images(regions, [row["question_tokens"] for row in rows], vocab, targets)


def augment(rows: list[dict], settings: dict, seed: int) -> list[dict]:
    """`rows` and, with `settings["augment"]`, each one mirrored and/or with its colours permuted: the image and
    the question changed alike, so the answer holds (12 rows for each)."""
    if not settings["augment"]:
        return rows
    out = []
    for mirrored, order in itertools.product((False, True), itertools.permutations(range(len(COLOURS)))):
        renamed = {COLOURS[old]: COLOURS[new] for new, old in enumerate(order)}  # channel `new` shows `old`'s
        if mirrored:
            renamed.update(MIRRORED)
        for row in rows:
            image = from_cells(row)[:, ::-1] if mirrored else from_cells(row)
            tokens = [renamed.get(t, t) for t in row["question_tokens"]]
            out.append({**row, **to_cells(np.ascontiguousarray(image[..., list(order)])), "question_tokens": tokens})
    return out


def parse_request(request: dict, settings: dict) -> dict:
    """{'image': an array, PNG/JPEG bytes, base64 of them or a path; 'question': text} -> a row; ConfigError
    naming the column."""
    try:
        image = read_image(request.get("image"), tuple(settings["image_shape"]))
    except ConfigError as error:
        raise ConfigError(f"image: {error}") from None
    question = str(request.get("question", ""))
    if not tokenize(question):
        raise ConfigError("question: no words in it")
    names = region_names(settings["grid"])
    return {
        "image_array": image,
        "story": names,
        "story_tokens": [[] for _ in names],
        "question": question,
        "question_tokens": tokenize(question),
    }


def anchors(config: VqaRunConfig) -> list[str]:
    """Published SHAPES results (../shared/data/shapes/README.md; ../shared/docs/PAPERS.md: U not checked)."""
    return [
        "Always answering 'false': 63.4 % on SHAPES test (data README)",
        "NMN (Andreas et al. 2016), trained on train.large (13,568 examples): about 90 % on test (U)",
    ]


APPLICATION = Application(
    name="vqa",
    module=__name__,
    unit_name="dataset",
    unit_title="data set",
    unit_type=str,
    config_type=VqaRunConfig,
    unit_field="datasets",
    describe=lambda config: "SHAPES visual QA",
    source_fingerprint=lambda config: files_fingerprint(config.source, _wanted, BUNDLED, config.source_sha256),
    ingest=ingest,
    tokenise=tokenise,
    settings=settings,
    encode=encode,
    render_answer=lambda ids, vocab, kind: vocab.answers[ids[0]],
    parse_request=parse_request,
    request_columns=(Column("image", "image"), Column("question")),
    output=Column("answer"),
    example_request=lambda row: {
        "image": base64.b64encode(png_bytes(from_cells(row))).decode(),
        "question": row["question"],
    },
    anchors=anchors,
    per_class=True,
    pass_error=None,
    first_max_error=0.3,  # better than always answering the majority answer (36.6 % error on SHAPES test)
    audit_view=lambda row: (region_names(GRID), row["question"], row["answer"]),
    augment=augment,
    question_type=lambda row: row["question_type"],
    audit_image=from_cells,
)
