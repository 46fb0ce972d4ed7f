"""Visual QA (SHAPES) as a DMN application: the reader on the real files and its refusals (file and line), the
regions in snake order, the label-preserving augmentation, and the flow end to end (real Prefect API, MLflow on
SQLite, Parquet) on a slice of the real SHAPES files, through to the pyfunc asked with an array, PNG bytes,
base64 text and a path, and `dmn ask --image`."""

import base64
import itertools
import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.exceptions import MlflowException

from dmn.apps.vqa import BUNDLED, VqaRunConfig, augment
from dmn.config import ModelConfig, TrainConfig
from dmn.data.fetch import extract_archive
from dmn.data.images import from_cells, image_regions, png_bytes, snake_order, to_cells
from dmn.data.shapes import read_shapes_split
from dmn.data.vqa_v2 import normalize_answer, read_vqa_split, split_names, vqa_accuracy
from dmn.errors import DataError
from dmn.report import report_markdown
from flows.cli import main
from flows.vqa import vqa_flow

SPLITS = ("train.small", "val", "test")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """The real SHAPES files (train.small, val, test), extracted from the bundled archive."""
    return extract_archive(BUNDLED, tmp_path_factory.mktemp("shapes") / "release", lambda name: name.startswith(SPLITS))


def _files(folder: Path) -> dict[str, str]:
    return {path.name: str(path) for path in folder.iterdir()}


def _slice(shapes: Path, folder: Path, sizes: dict[str, int]) -> Path:
    """The first examples of each real split: a small but real SHAPES."""
    folder.mkdir()
    for split, n in sizes.items():
        np.save(folder / f"{split}.input.npy", np.load(shapes / f"{split}.input.npy")[:n])
        for suffix in (".query_str.txt", ".query", ".output"):
            lines = (shapes / f"{split}{suffix}").read_text().splitlines()[:n]
            (folder / f"{split}{suffix}").write_text("\n".join(lines) + "\n")
    return folder


def test_reader_on_the_real_files_and_the_false_baseline(shapes):
    rows = {split: read_shapes_split(_files(shapes), split) for split in SPLITS}
    assert [len(rows[s]) for s in SPLITS] == [640, 1024, 1024]
    first = rows["train.small"][0]
    assert first["question"] == "is a green shape left of a red shape" and first["answer"] == "false"
    assert first["layout"] == "(is green (left_of red))" and first["question_type"] == "is"
    assert first["image_array"].shape == (30, 30, 3) and first["image_array"].dtype == np.uint8
    always_false = np.mean([r["answer"] == "false" for r in rows["test"]])
    assert round(float(always_false), 3) == 0.634  # the data README's majority baseline


@pytest.mark.parametrize(
    "damage, message",
    [
        ("shape", r"val.input.npy: images of shape \(4, 30, 30\) and dtype uint8; \(N, H, W, 3\) uint8 needed"),
        ("dtype", r"val.input.npy: images of shape \(4, 30, 30, 3\) and dtype float32"),
        ("count", r"val.query_str.txt: 3 lines, but 4 images in val.input.npy"),
        ("answer", r"val.output:2: answer 'maybe' is not one of true, false"),
    ],
)
def test_bad_files_are_refused_with_file_and_line(shapes, tmp_path, damage, message):
    folder = _slice(shapes, tmp_path / "source", {"val": 4})
    images = np.load(folder / "val.input.npy")
    if damage == "shape":
        np.save(folder / "val.input.npy", images[..., 0])
    elif damage == "dtype":
        np.save(folder / "val.input.npy", images.astype(np.float32))
    elif damage == "count":
        (folder / "val.query_str.txt").write_text("\n".join((folder / "val.query_str.txt").read_text().split("\n")[:3]))
    else:
        lines = (folder / "val.output").read_text().splitlines()
        (folder / "val.output").write_text("\n".join([lines[0], "maybe", *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=message):
        read_shapes_split(_files(folder), "val")


def test_regions_are_the_grid_cells_in_snake_order():
    image = np.zeros((6, 6, 3), dtype=np.uint8)
    for number, (row, column) in enumerate([(r, c) for r in range(3) for c in range(3)]):
        image[2 * row : 2 * row + 2, 2 * column : 2 * column + 2] = number  # cell (row, column) holds its number
    regions = image_regions([image], grid=3)  # (1, 9, 3, 2, 2)
    assert regions.shape == (1, 9, 3, 2, 2)
    assert regions[0, :, 0, 0, 0].tolist() == [0, 1, 2, 5, 4, 3, 6, 7, 8]
    assert snake_order(2) == [(0, 0), (0, 1), (1, 1), (1, 0)]


COLOUR_RELATION = re.compile(r"is a (red|green|blue) shape (left of|right of|above|below) a (red|green|blue) shape")
DIRECTIONS = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}  # subject from object


def _answer_seen(image: np.ndarray, question: str) -> str:
    """The answer to "is a <colour> shape <relation> a <colour> shape" read off the pixels: each cell's colour is
    its lit pixels' strongest channel (R, G, B); the relation is between neighbouring cells."""
    subject, relation, thing = COLOUR_RELATION.fullmatch(question).groups()
    colours = {}
    for r, c in itertools.product(range(3), range(3)):
        cell = image[10 * r : 10 * r + 10, 10 * c : 10 * c + 10].reshape(-1, 3).astype(int)
        lit = cell[cell.max(1) > 100]
        colours[r, c] = ("red", "green", "blue")[int(lit.mean(0).argmax())] if len(lit) else None
    dr, dc = DIRECTIONS[relation]
    found = any(colours[r, c] == thing and colours.get((r + dr, c + dc)) == subject for r, c in colours)
    return "true" if found else "false"


def _colour_relation_rows(rows: list[dict]) -> list[dict]:
    return [row for row in rows if COLOUR_RELATION.fullmatch(" ".join(row["question_tokens"]))]


def test_reader_gives_rgb_the_colour_words_agree_with_the_pixels(shapes):
    """SHAPES' arrays are stored BGR: read as RGB, every colour-only relation question's answer is the one its
    pixels give (before the fix, about half were)."""
    rows = _colour_relation_rows([row for split in SPLITS for row in read_shapes_split(_files(shapes), split)])
    assert len(rows) == 512
    assert all(_answer_seen(row["image_array"], row["question"]) == row["answer"] for row in rows)


def test_augmentation_moves_image_relations_and_colours_alike(shapes):
    """Under the square's 8 symmetries and the 6 colour permutations, every augmented colour-relation question
    still has the answer its pixels give; relations turn with the image ('left of' -> 'above' when transposed)."""
    rows = _colour_relation_rows(read_shapes_split(_files(shapes), "val"))[::16]  # 12 rows of 3 questions
    stored = [{**to_cells(row.pop("image_array")), **row} for row in rows]  # the rows as Parquet holds them
    augmented = augment(stored, {"augment": True}, 0)
    assert len(augmented) == 48 * len(stored)
    for row in augmented:
        assert _answer_seen(from_cells(row), " ".join(row["question_tokens"])) == row["answer"]
    questions = {" ".join(row["question_tokens"]) for row in augmented}
    assert len(questions) == 4 * 6  # every relation between two different colours, from 3 such questions
    assert augment(stored[:1], {"augment": False}, 0) == stored[:1]


def test_vqa_flow_trains_registers_and_answers_images(prefect_api, shapes, tmp_path, monkeypatch, capsys):
    source = _slice(shapes, tmp_path / "source", {"train.small": 48, "val": 24, "test": 40})
    config = VqaRunConfig(
        source=str(source),
        data_root=str(tmp_path / "data"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        model=ModelConfig(hidden_size=16, passes=2),
        train=TrainConfig(max_epochs=1, patience=1, batch_size=64, seed=3),
    )
    assert config.model.input_kind == "regions" and config.model.answer_kind == "class"
    monkeypatch.chdir(tmp_path)  # MLflow writes artifacts under the working directory
    outcome = vqa_flow(config)
    report, version = outcome["report"], outcome["version"]
    assert version.name == "dmn-vqa" and version.version == "1"
    (unit,) = report["units"]
    assert unit["unit"] == "shapes" and unit["examples"] == 40 and unit["classes"] == ["false", "true"]
    assert unit["by_group"] == {"is": {"examples": 40, "accuracy": unit["accuracy"]}}
    assert sum(map(sum, unit["confusion"])) == 40
    assert "### data set shapes: by question type" in report_markdown(report)

    (part,) = (tmp_path / "data" / "tokens").glob("vqa-*/dataset=shapes/*.parquet")
    table = pq.read_table(part)
    assert table.num_rows == 48 + 24 + 40 and table.schema.field("image").type == "binary"
    stored = table.slice(0, 1).to_pylist()[0]
    original = np.load(source / "train.small.input.npy")[0, ..., ::-1]  # stored RGB, the file's BGR reversed
    assert stored["image_shape"] == [30, 30, 3] and stored["image_dtype"] == "uint8"
    assert np.array_equal(np.frombuffer(stored["image"], np.uint8).reshape(30, 30, 3), original)
    assert sorted(set(table.column("split").to_pylist())) == ["dev", "test", "train"]

    # the audit page draws the gates over the image's regions
    run = mlflow.tracking.MlflowClient(config.tracking_uri).get_run(version.run_id)
    audit = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="report",
                                                     tracking_uri=config.tracking_uri))  # fmt: skip
    assert (audit / "evaluation.html").read_text().count("data:image/png;base64") >= 3  # curves + 2 examples

    test_images = np.ascontiguousarray(np.load(source / "test.input.npy")[..., ::-1])  # RGB, as the model reads
    questions = (source / "test.query_str.txt").read_text().splitlines()
    image_file = tmp_path / "shape.png"
    image_file.write_bytes(png_bytes(test_images[1]))
    model = mlflow.pyfunc.load_model(version.uri)
    requests = pd.DataFrame(
        {
            "image": [test_images[0], png_bytes(test_images[1]), base64.b64encode(png_bytes(test_images[1])).decode(),
                      str(image_file), test_images[0].tolist()],
            "question": [questions[0], questions[1], questions[1], questions[1], questions[0]],
        }
    )  # fmt: skip
    answers = model.predict(requests)
    assert set(answers) <= {"true", "false"}
    assert answers[1] == answers[2] == answers[3] and answers[0] == answers[4]  # one image, however it is sent
    details = model.predict(requests.iloc[:1], params={"details": True})
    assert details.loc[0, "facts"] == 9 and details.loc[0, "dataset"] == "shapes"
    alone = model.unwrap_python_model().answer({"image": test_images[0], "question": questions[0]})
    assert alone.answer == answers[0] and len(alone.gates[0]) == 9
    assert alone.sentences[:4] == ["row 1, column 1", "row 1, column 2", "row 1, column 3", "row 2, column 3"]

    bad = pd.DataFrame({"image": [test_images[0], test_images[0][:20]], "question": ["is a red shape", "is"]})
    with pytest.raises(MlflowException, match=r"row 1: image: shape \(20, 30, 3\); the model reads images of "
                                              r"shape \(30, 30, 3\)"):  # fmt: skip
        model.predict(bad)
    with pytest.raises(MlflowException, match=r"row 0: image: .* is neither an image file nor base64"):
        model.predict(pd.DataFrame({"image": ["no-such-file.png"], "question": ["is a red shape"]}))

    code = main(["ask", version.uri, "--image", str(image_file), "--question", questions[1],
                 "--tracking-uri", config.tracking_uri])  # fmt: skip
    shown = capsys.readouterr().out.splitlines()
    assert code == 0 and shown[0].split()[1] == answers[1] and "data set shapes model" in shown[0]
    assert shown[-1].endswith("row 3, column 3") and len(shown) == 3 + 9


def test_bad_source_exits_2_naming_file_and_line_and_writes_nothing(prefect_api, shapes, tmp_path, capsys):
    source = _slice(shapes, tmp_path / "source", {"train.small": 8, "val": 8, "test": 8})
    (source / "test.output").write_text("true\nfalse\nyes\n" + "true\n" * 5)
    code = main(["run", "vqa", "--source", str(source), "--data-root", str(tmp_path / "data"), "--epochs", "1"])
    assert code == 2
    error = capsys.readouterr().err
    assert "test.output:3: answer 'yes' is not one of true, false" in error and "Traceback" not in error
    assert not (tmp_path / "data" / "tokens").exists() and not (tmp_path / "data" / "models").exists()


def test_text_applications_refuse_the_visual_input_module():
    from dmn.apps.babi import BabiRunConfig

    with pytest.raises(ValueError, match="model.input: 'regions' reads images; this application reads text"):
        BabiRunConfig(model=ModelConfig(input="regions"))
    with pytest.raises(ValueError, match="model.input: this application reads images"):
        VqaRunConfig(model=ModelConfig(input="sentences"))
    assert VqaRunConfig().model.input == "regions"


def test_vqa_accuracy_and_the_official_normalisation():
    humans = ["dog"] + ["cat"] * 9
    assert vqa_accuracy("dog", humans) == pytest.approx(0.3)  # one match of ten
    assert vqa_accuracy("Cat.", humans) == pytest.approx(1.0)
    assert vqa_accuracy("2", ["two"] * 3 + ["3"] * 7) == pytest.approx(0.9)  # 3 humans: 2/3 in 3 subsets of 10
    assert vqa_accuracy("none", ["none"] * 10) == 1.0  # the official script scores this 0
    assert vqa_accuracy("None", ["none"] * 5 + ["0"] * 5) == 1.0
    assert [normalize_answer(a) for a in ["A Dog", "black-and-white", "1,000", "dont", "3.5", "yes."]] == [
        "dog", "black and white", "1000", "don't", "3.5", "yes",
    ]  # fmt: skip


def _vqa_v2(folder: Path, images_per_split: dict[str, int]) -> Path:
    """A small VQA v2 style release: per split a questions JSON, an annotations JSON and COCO-named images
    (a dark or a light picture, half JPEG, half PNG); 'is it dark' has ten human answers, not all alike."""
    from PIL import Image

    rng = np.random.default_rng(0)
    question_id = 0
    for split, n_images in images_per_split.items():
        (folder / split).mkdir(parents=True)
        questions, annotations = [], []
        for image_id in range(1, n_images + 1):
            dark = image_id % 2 == 0
            pixels = rng.integers(0, 60, (48, 64, 3)) if dark else rng.integers(190, 256, (48, 64, 3))
            suffix = ".jpg" if image_id % 4 < 2 else ".png"
            Image.fromarray(pixels.astype(np.uint8)).save(folder / split / f"COCO_{split}_{image_id:012d}{suffix}")
            for question, answer in (("Is it dark?", "yes" if dark else "no"), ("How many suns?", "none")):
                question_id += 1
                questions.append({"image_id": image_id, "question": question, "question_id": question_id})
                answers = [answer] * 8 + ["maybe", "Yes."]
                annotations.append({"question_id": question_id, "image_id": image_id, "question_type": question
                                    .split()[0].lower(), "answers": [{"answer": a} for a in answers]})  # fmt: skip
        (folder / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(json.dumps({"questions": questions}))
        (folder / f"v2_mscoco_{split}_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return folder


def test_vqa_v2_reader_through_datasets_and_its_refusals(tmp_path):
    folder = _vqa_v2(tmp_path / "vqa", {"train2014": 4, "val2014": 2})
    files = {path.name: str(path) for path in folder.rglob("*") if path.is_file()}
    assert split_names(files) == ["train2014", "val2014"]
    assert split_names({"v2_OpenEnded_mscoco_test-dev2015_questions.json": "x"}) == ["test-dev2015"]
    rows = read_vqa_split(files, "train2014", (112, 112, 3))
    assert len(rows) == 8 and rows[0]["question_tokens"] == ["is", "it", "dark"] and rows[0]["line"] == 1
    assert rows[0]["answer"] == "no" and len(rows[0]["answers"]) == 10 and rows[1]["answer"] == "0"  # none -> 0
    assert rows[0]["image_array"].shape == (112, 112, 3) and rows[0]["image_array"].mean() > 150  # light
    assert rows[2]["image_array"].mean() < 60 and rows[0]["question_type"] == "is"  # image 2 is dark

    annotations = folder / "v2_mscoco_val2014_annotations.json"
    kept = json.loads(annotations.read_text())
    annotations.write_text(json.dumps({"annotations": kept["annotations"][:3]}))
    with pytest.raises(DataError, match=r"v2_mscoco_val2014_annotations.json:4: no annotation of question_id 12"):
        read_vqa_split(files, "val2014", (112, 112, 3))
    annotations.write_text("{not json")
    with pytest.raises(DataError, match=r"val2014_annotations.json: not a JSON object with a 'annotations' list"):
        read_vqa_split(files, "val2014", (112, 112, 3))
    annotations.write_text(json.dumps(kept))
    (folder / "val2014" / "COCO_val2014_000000000002.png").unlink()
    files = {path.name: str(path) for path in folder.rglob("*") if path.is_file()}
    with pytest.raises(DataError, match=r"val2014_questions.json:3: image 2 is not in the val2014 images"):
        read_vqa_split(files, "val2014", (112, 112, 3))


def test_a_vqa_v2_source_without_a_val_split_is_refused_before_anything_is_stored(prefect_api, tmp_path, capsys):
    source = _vqa_v2(tmp_path / "vqa", {"train2014": 4, "test2015": 2, "test-dev2015": 1})
    for split in ("test2015", "test-dev2015"):  # as released: test questions carry no answers
        (source / f"v2_mscoco_{split}_annotations.json").unlink()
    data = tmp_path / "data"
    code = main(["run", "vqa", "--datasets", "vqa-v2", "--source", str(source), "--data-root", str(data)])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error, error
    assert f"{source}: no VQA v2 split to test on among test-dev2015, test2015, train2014" in error
    assert "a split named *val* (val2014)" in error
    assert not any(data.iterdir()), list(data.iterdir())  # nothing ingested, tokenised or trained


def test_a_shapes_source_missing_a_file_is_refused_before_anything_is_stored(prefect_api, tmp_path, capsys):
    source = tmp_path / "shapes"
    source.mkdir()
    (source / "test.output").write_text("true\n")
    data = tmp_path / "data"
    code = main(["run", "vqa", "--source", str(source), "--data-root", str(data)])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error, error
    assert f"{source}: SHAPES source lacks test.input.npy, test.query, test.query_str.txt, train.small" in error
    assert not any(data.iterdir()), list(data.iterdir())


def test_vqa_v2_flow_reports_vqa_accuracy_as_the_served_answers_score(prefect_api, tmp_path, monkeypatch):
    source = _vqa_v2(tmp_path / "vqa", {"train2014": 12, "val2014": 4})
    config = VqaRunConfig(
        datasets=["vqa-v2"],
        source=str(source),
        data_root=str(tmp_path / "data"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        model=ModelConfig(hidden_size=16, passes=1),
        train=TrainConfig(max_epochs=2, patience=2, batch_size=8),
    )
    monkeypatch.chdir(tmp_path)
    outcome = vqa_flow(config)
    (unit,) = outcome["report"]["units"]
    assert unit["unit"] == "vqa-v2" and unit["examples"] == 8 and set(unit["by_group"]) == {"is", "how"}
    assert "| data set | accuracy | VQA accuracy |" in report_markdown(outcome["report"])

    model = mlflow.pyfunc.load_model(outcome["version"].uri)
    images = sorted((source / "val2014").iterdir())
    questions = json.loads((source / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    annotations = json.loads((source / "v2_mscoco_val2014_annotations.json").read_text())["annotations"]
    from dmn.data.vqa_v2 import _image  # the reader's resizing, as the test split was stored

    requests = pd.DataFrame(
        {"image": [_image(str(images[q["image_id"] - 1]), (112, 112, 3)) for q in questions],
         "question": [q["question"] for q in questions]}
    )  # fmt: skip
    answers = model.predict(requests)
    humans = [[a["answer"] for a in annotation["answers"]] for annotation in annotations]
    served = sum(vqa_accuracy(a, h) for a, h in zip(answers, humans)) / len(humans)
    assert unit["vqa_accuracy"] == pytest.approx(served)
    run = mlflow.tracking.MlflowClient(config.tracking_uri).get_run(outcome["version"].run_id)
    assert run.data.metrics["dataset_vqa-v2.test_vqa_accuracy"] == pytest.approx(served)

    # a photo as sent: any size (resized as training's were), as a path or as base64 text of 112x112 PNG bytes
    photo = str(images[0])
    encoded = base64.b64encode(png_bytes(_image(photo, (112, 112, 3)))).decode()
    assert len(encoded) > 4096  # longer than any path: not taken for one
    again = model.predict(pd.DataFrame({"image": [photo, encoded], "question": [questions[0]["question"]] * 2}))
    assert again == [answers[0], answers[0]]


def test_dmn_run_vqa_options_build_its_config():
    from flows.cli import build_parser, config_from_args

    args = build_parser().parse_args(["run", "vqa", "--datasets", "shapes,vqa-v2", "--no-augment", "--model", "dmn"])
    config = config_from_args(args)
    assert config.datasets == ["shapes", "vqa-v2"] and config.augment is False
    assert config.model.architecture == "dmn" and config.model.input_kind == "regions"
    assert config.model.answer_kind == "class"  # the original DMN's decoder is not the answer of a class
    assert config_from_args(build_parser().parse_args(["run", "vqa"])).augment is True


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "no image given"),
        ([[[0, 0, 0]], [[0, 0, 0], [1, 1, 1]]], "nested lists of different lengths"),
        ([[["a", "b", "c"]]], "an array of uint8 pixels is needed, got dtype <U1"),
        (b"GIF89a....", "bytes that are not a PNG or JPEG image"),
        ("no such file!" * 400, "is neither an image file nor base64 image bytes"),
    ],
)
def test_bad_request_images_are_one_line_errors(value, message):
    from dmn.data.images import read_image
    from dmn.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        read_image(value, (30, 30, 3))
