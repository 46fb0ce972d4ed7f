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
from dmn.data.vqa_v2 import IMAGE_SUFFIXES, read_vqa_split, split_names, vqa_accuracy
from dmn.errors import ConfigError, DataError

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "shapes.tar.xz"
DATASETS = ("shapes", "vqa-v2")
SHAPES_SPLITS = {"train": ("train.small", "val"), "test": ("test",)}  # SHAPES files of each split (dev: below)
VALID_HELD_BACK = 224  # SHAPES: the last val examples are the validation split (the rest of val trains)
VALID_FRACTION = 0.1  # VQA v2: the last share of the training questions validates
# (H, W, C) the images are read as, and the g of the g x g grid of regions: SHAPES draws a 3x3 grid of shapes;
# VQA v2's photographs are resized to 112 x 112 and cut into 7 x 7 regions of 16 x 16 pixels
IMAGES = {"shapes": ((30, 30, 3), 3), "vqa-v2": ((112, 112, 3), 7)}
COLOURS = ("red", "green", "blue")  # SHAPES' colours are pure: one RGB channel each
# SHAPES' relations: where the subject's cell is, (rows, columns), from the object's (its neighbour's)
RELATIONS = {("left", "of"): (0, -1), ("right", "of"): (0, 1), ("above",): (-1, 0), ("below",): (1, 0)}
PHRASES = {direction: list(phrase) for phrase, direction in RELATIONS.items()}
SQUARE_SYMMETRIES = list(itertools.product((False, True), repeat=3))  # (transpose, flip rows, flip columns)
SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("file", pa.string()),  # the split file the example comes from (SHAPES: e.g. val; VQA v2: the questions)
        ("line", pa.int32()),  # its line (SHAPES: and image index + 1; VQA v2: its place among the questions)
        ("question", pa.string()),
        ("question_tokens", pa.list_(pa.string())),
        ("layout", pa.string()),  # SHAPES: the question as a module layout, "(is green (left_of red))"
        ("question_type", pa.string()),  # SHAPES: the layout's first word, "is"; VQA v2: the annotation's
        ("answer", pa.string()),
        ("answers", pa.list_(pa.string())),  # the humans' answers (VQA v2: ten; SHAPES: the answer)
        ("image", pa.binary()),  # raw pixels, image_shape and image_dtype tell how to read them
        ("image_shape", pa.list_(pa.int32())),
        ("image_dtype", pa.string()),
    ]
)


class VqaRunConfig(RunConfig):
    """Everything one `dmn run vqa` needs; also the parameters of the Prefect flow."""

    reads_images: ClassVar[bool] = True

    datasets: list[Literal["shapes", "vqa-v2"]] = Field(
        ["shapes"],
        description="Visual QA data sets, one model each: 'shapes' (SHAPES, 3x3 grids of shapes) and/or 'vqa-v2' "
        "(VQA v2 style questions, annotations and images; scored with VQA's accuracy too).",
    )
    source: str = Field(
        "bundled",
        description="'bundled' (SHAPES train.small, val and test in data/), a folder holding SHAPES' "
        "<split>.input.npy, .query_str.txt, .query and .output files and/or VQA v2's *<split>_questions.json, "
        "*<split>_annotations.json and COCO-named images, or an archive path or URL of them.",
    )
    source_sha256: str | None = Field(None, description="Expected sha256 of an archive source.")
    model_name: str = Field("dmn-vqa", description="Registered model name in MLflow.")
    model: ModelConfig = Field(
        ModelConfig(answer="class", input="regions"),
        description="The DMN (the visual input module reads the image's regions; the answer is one class).",
    )
    train: TrainConfig = Field(
        TrainConfig(batch_size=64, max_epochs=20, patience=4, l2=0.0),
        description="Training (an epoch of SHAPES train.small and most of val is 1,440 examples, 48 times that "
        "with `augment`); no L2 penalty: with the text default's 1e-3 the answer stays at the question's prior "
        "(README, Visual question answering); the weights as trained are kept (a moving average of them: 70.3 % "
        "against 69.2 %, one seed, not enough to change the default).",
    )
    augment: bool = Field(
        True,
        description="Also train on each example under the square's 8 symmetries (turned and mirrored, the "
        "question's 'left of', 'right of', 'above' and 'below' turned alike) and with its colours permuted (red, "
        "green and blue in the image and in the question alike): 48 examples for each one, every answer unchanged.",
    )

    @model_validator(mode="after")
    def _class_answer(self) -> VqaRunConfig:
        self.model = only_answer(self.model, "class", "a visual QA answer is one class")
        return self


SHAPES_FILES = frozenset(
    f"{split}{suffix}" for names in SHAPES_SPLITS.values() for split in names for suffix in SUFFIXES
)


def _is_shapes_file(name: str) -> bool:
    return name in SHAPES_FILES


def _wanted(name: str) -> bool:
    """SHAPES' files, and VQA v2's questions, annotations and images."""
    lowered = name.lower()
    return _is_shapes_file(name) or lowered.endswith(("_questions.json", "_annotations.json", *IMAGE_SUFFIXES))


def ingest(config: VqaRunConfig, data_root: str) -> RawFiles:
    return ingest_files(
        config.source, data_root, "vqa", _wanted, BUNDLED, config.source_sha256, lambda files: _check(config, files)
    )


def _check(config: VqaRunConfig, files: dict[str, Path]) -> None:
    """DataError where the files lack what the configured data sets need (before anything is stored)."""
    missing = sorted(SHAPES_FILES - set(files))
    if "shapes" in config.datasets and missing:
        raise DataError(config.source, f"SHAPES source lacks {', '.join(missing)}")
    if "vqa-v2" in config.datasets:
        splits = split_names(files)
        if not splits:
            raise DataError(config.source, "no VQA v2 *_questions.json there")
        if "test" not in map(_vqa_v2_split, splits):  # a run and `dmn evaluate` both test on it
            raise DataError(
                config.source,
                f"no VQA v2 split to test on among {', '.join(splits)}: the test examples are a split named *val* "
                "(val2014) with its annotations; the *test* splits publish no answers",
            )


def tokenise(raw: RawFiles, data_root: str) -> TokenisedData:
    """Read the data sets the files hold (SHAPES, VQA v2 or both); publish Parquet (a partition per data set;
    images as bytes, shape and dtype), vocabulary and manifest."""
    target = tokens_folder(data_root, "vqa", raw.digest, __name__)
    files = raw.files()
    present = [
        d for d, found in (("shapes", any(map(_is_shapes_file, files))), ("vqa-v2", split_names(files))) if found
    ]
    if not is_published(target):
        readers = {"shapes": _shapes_rows, "vqa-v2": _vqa_v2_rows}
        tables = {dataset: pa.Table.from_pylist(readers[dataset](files), schema=SCHEMA) for dataset in present}
        train = train_rows(tables)
        vocab = Vocabulary.build(
            [tokens for t in train for tokens in t["question_tokens"].to_pylist()]
            + [list(COLOURS), [w for p in RELATIONS for w in p]],
            [answer for t in train for answer in t["answer"].to_pylist()],
        )
        publish(target, "dataset", tables, vocab, {"digest": raw.digest, "datasets": present})
    return TokenisedData(target, raw.digest, "dataset", "data set", tuple(present))


def _shapes_rows(files: dict[str, str]) -> list[dict]:
    """SHAPES: train.small and val train, but the last VALID_HELD_BACK of val validate; test tests."""
    shape = IMAGES["shapes"][0]
    rows = []
    for split, names in SHAPES_SPLITS.items():
        for name in names:
            for row in read_shapes_split(files, name):
                if row["image_array"].shape != shape:
                    image_file = files[f"{name}.input.npy"]
                    raise DataError(image_file, f"images of {row['image_array'].shape}; SHAPES' are {shape}")
                image = row.pop("image_array")
                rows.append({"split": split, "file": name, **row, "answers": [row["answer"]], **to_cells(image)})
    val = [i for i, row in enumerate(rows) if row["file"] == "val"]
    for i in val[-VALID_HELD_BACK:]:
        rows[i]["split"] = "dev"
    return rows


def _vqa_v2_rows(files: dict[str, str]) -> list[dict]:
    """VQA v2: a split named *train* trains (its last VALID_FRACTION validates), one named *val* tests (the
    test splits publish no answers)."""
    rows = []
    for name in split_names(files):
        split = _vqa_v2_split(name)
        if split is None:
            continue
        examples = read_vqa_split(files, name, IMAGES["vqa-v2"][0])
        questions = Path(next(n for n in files if n.endswith(f"{name}_questions.json"))).name
        split_rows = [{"split": split, "file": questions, **r, **to_cells(r.pop("image_array"))} for r in examples]
        if split == "train":
            for row in split_rows[len(split_rows) - max(1, round(len(split_rows) * VALID_FRACTION)) :]:
                row["split"] = "dev"
        rows += split_rows
    return rows


def _vqa_v2_split(name: str) -> str | None:
    """The split a VQA v2 split name feeds: 'train' (*train*, trainval2014 too), 'test' (*val*) or None (*test*)."""
    return "train" if "train" in name else "test" if "val" in name else None


def settings(config: VqaRunConfig, dataset: str) -> dict:
    """The image size and grid of the data set; turning, mirroring and recolouring keep SHAPES' answers only (a photo's
    "what colour is the bus" does not survive them); a photo of any size is resized as training's were."""
    shape, grid = IMAGES[dataset]
    shapes = dataset == "shapes"  # requests of another size are refused (SHAPES) or resized as the photos were
    return {"image_shape": list(shape), "grid": grid, "augment": config.augment and shapes, "resize": not shapes}


def score(rows: list[dict], answers: list[str]) -> dict:
    """VQA accuracy (dmn/data/vqa_v2.py) where the humans gave several answers; nothing more where one answer is
    the truth (SHAPES: the exact accuracy is the score)."""
    if all(len(row["answers"]) < 2 for row in rows):
        return {}
    return {"vqa_accuracy": sum(vqa_accuracy(a, row["answers"]) for a, row in zip(answers, rows)) / len(rows)}


def _grid(row: dict) -> int:
    """The grid of a stored row's data set, known by its image size."""
    return {shape: grid for shape, grid in IMAGES.values()}[tuple(row["image_shape"])]


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
    """`rows` and, with `settings["augment"]`, each one under every symmetry of the square (rotations and
    reflections: the grid maps onto itself) and every permutation of the colours: the image and the question's
    relation and colour words changed alike, so the answer holds (8 x 6 = 48 rows for each)."""
    if not settings["augment"]:
        return rows
    out = []
    for symmetry, order in itertools.product(SQUARE_SYMMETRIES, itertools.permutations(range(len(COLOURS)))):
        renamed = {COLOURS[old]: COLOURS[new] for new, old in enumerate(order)}  # channel `new` shows `old`'s
        for row in rows:
            image = _transformed(from_cells(row), symmetry)[..., list(order)]
            tokens = [renamed.get(t, t) for t in _relations_moved(row["question_tokens"], symmetry)]
            out.append({**row, **to_cells(np.ascontiguousarray(image)), "question_tokens": tokens})
    return out


def _transformed(image: np.ndarray, symmetry: tuple[bool, bool, bool]) -> np.ndarray:
    """(H, W, C) -> the image transposed, then upside down, then mirrored, as `symmetry` says."""
    transpose, flip_rows, flip_columns = symmetry
    image = image.transpose(1, 0, 2) if transpose else image
    return image[:: -1 if flip_rows else 1, :: -1 if flip_columns else 1]


def _relations_moved(tokens: list[str], symmetry: tuple[bool, bool, bool]) -> list[str]:
    """The question's relation phrases ('left of', 'above'...) as `symmetry` moves their direction."""
    transpose, flip_rows, flip_columns = symmetry
    out, i = [], 0
    while i < len(tokens):
        phrase = next((p for p in RELATIONS if tuple(tokens[i : i + len(p)]) == p), None)
        if phrase is None:
            out.append(tokens[i])
            i += 1
            continue
        rows, columns = RELATIONS[phrase][::-1] if transpose else RELATIONS[phrase]
        out += PHRASES[(-rows if flip_rows else rows, -columns if flip_columns else columns)]
        i += len(phrase)
    return out


def parse_request(request: dict, settings: dict) -> dict:
    """{'image': an array, PNG/JPEG bytes, base64 of them or a path; 'question': text} -> a row; ConfigError
    naming the column."""
    try:
        image = read_image(request.get("image"), tuple(settings["image_shape"]), resize=settings.get("resize", False))
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
    ingest_checks_units=True,
    describe=lambda config: (
        " and ".join({"shapes": "SHAPES", "vqa-v2": "VQA v2"}[d] for d in config.datasets) + " visual QA"
    ),
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
    ask_hint='--image shapes.png --question "is a red shape left of a circle"',
    anchors=anchors,
    per_class=True,
    pass_error=None,
    first_max_error=0.3,  # better than always answering the majority answer (36.6 % error on SHAPES test)
    audit_view=lambda row: (region_names(_grid(row)), row["question"], row["answer"]),
    augment=augment,
    question_type=lambda row: row["question_type"],
    score=score,
    audit_image=from_cells,
)
