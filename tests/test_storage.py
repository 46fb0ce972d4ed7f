"""The data root in an object store: ingest, Parquet, training and evaluation on S3 (a real S3 server on
127.0.0.1), folders published whole, and errors that name the object and line."""

import shutil

import pytest

from dmn import storage
from dmn.apps.babi import APPLICATION as BABI
from dmn.apps.babi import BabiRunConfig
from dmn.checkpoint import load_checkpoint
from dmn.config import ModelConfig, TrainConfig
from dmn.data.parquet import MANIFEST
from dmn.data.sources import ingest_babi
from dmn.errors import ConfigError, DataError
from dmn.pipeline import evaluate_unit, train_unit
from tests.conftest import bucket_keys, s3_filesystem, s3_uri

CUT = {"sentence_limit": 70}  # the story cut of a bAbI task


@pytest.fixture(scope="module")
def task_1_source(babi_en, tmp_path_factory):
    """A folder holding the real files of bAbI task 1 only: the store round trips stay quick."""
    source = tmp_path_factory.mktemp("task-1")
    for path in babi_en.glob("qa1_*"):
        shutil.copy(path, source / path.name)
    return source


def test_ingest_tokenise_train_evaluate_with_the_data_root_on_s3(object_store, task_1_source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written locally
    root = s3_uri(object_store, "pipeline")
    raw = ingest_babi(str(task_1_source), "1k", root)
    dataset = BABI.tokenise(raw, root)
    assert raw.path.startswith("s3://dmn-tests/pipeline/raw/") and raw.path.endswith("&scheme=http")
    assert dataset.units == (1,)
    keys = bucket_keys(object_store, "pipeline")
    token_folder = dataset.path.split("?")[0].removeprefix("s3://dmn-tests/pipeline/")
    for name in ("babi_task=1/part-0.parquet", "vocab.json", MANIFEST):
        assert f"{token_folder}/{name}" in keys
    assert sum(key.startswith("raw/") for key in keys) == 3  # train, test, and the fallbacks marker
    rows = dataset.read(1, "test")
    assert len(rows) == 1000 and rows[0]["question"] == "Where is John?"

    model, train = ModelConfig(hidden_size=16), TrainConfig(max_epochs=2, patience=2, batch_size=100)
    checkpoint = train_unit(BABI, dataset, 1, CUT, model, train, storage.join(root, "models"))
    assert checkpoint.startswith("s3://dmn-tests/pipeline/models/") and storage.exists(checkpoint)
    assert not any(key.endswith(".progress.pt") for key in bucket_keys(object_store, "pipeline/models"))
    _, meta = load_checkpoint(checkpoint)
    assert meta["unit"] == 1 and len(meta["history"]) == 2
    result = evaluate_unit(BABI, dataset, 1, checkpoint)
    assert result["unit"] == 1 and 0.0 <= result["accuracy"] <= 1.0
    # the same data and configuration: found again in the store, not retrained
    assert train_unit(BABI, dataset, 1, CUT, model, train, storage.join(root, "models")) == checkpoint
    assert list(tmp_path.iterdir()) == []


def test_a_folder_cut_short_on_s3_is_not_read_and_is_published_again(object_store, task_1_source):
    root = s3_uri(object_store, "cut-short")
    raw = ingest_babi(str(task_1_source), "1k", root)
    dataset = BABI.tokenise(raw, root)
    s3 = s3_filesystem(object_store)
    folder = dataset.path.split("?")[0].removeprefix("s3://")
    s3.delete_dir(folder)
    # an upload that stopped after one file: a broken partition and no manifest
    with s3.open_output_stream(f"{folder}/babi_task=1/part-0.parquet") as stream:
        stream.write(b"not parquet")
    assert not storage.published(dataset.path, MANIFEST)
    again = BABI.tokenise(raw, root)
    assert again == dataset and storage.published(again.path, MANIFEST)
    assert len(again.read(1, "train")) == 1000

    with pytest.raises(RuntimeError, match="stopped"):  # a failing writer publishes nothing
        with storage.publishing(storage.join(root, "never"), MANIFEST) as staging:
            (staging / "part.parquet").write_bytes(b"x")
            raise RuntimeError("stopped")
    assert bucket_keys(object_store, "cut-short/never") == []


def test_an_upload_that_fails_midway_leaves_no_marker(object_store, monkeypatch):
    folder = storage.join(s3_uri(object_store, "midway"), "tokens")
    real, uploads = storage._upload, []

    def connection_drops_at_the_second_file(filesystem, path, data):
        uploads.append(path)
        if len(uploads) == 2:
            raise OSError("connection reset by peer")
        real(filesystem, path, data)

    monkeypatch.setattr(storage, "_upload", connection_drops_at_the_second_file)
    with pytest.raises(OSError, match="connection reset"):
        with storage.publishing(folder, MANIFEST) as staging:
            for name in ("a.parquet", "b.parquet", MANIFEST):
                (staging / name).write_text(name)
    monkeypatch.undo()
    assert bucket_keys(object_store, "midway/tokens") == ["a.parquet"] and not storage.published(folder, MANIFEST)
    with storage.publishing(folder, MANIFEST) as staging:  # the next run publishes it whole
        for name in ("a.parquet", "b.parquet", MANIFEST):
            (staging / name).write_text(name)
    assert bucket_keys(object_store, "midway/tokens") == ["a.parquet", "b.parquet", MANIFEST]


def test_raw_files_gone_after_ingest_are_named_not_tokenised_as_nothing(object_store, task_1_source):
    root = s3_uri(object_store, "gone")
    raw = ingest_babi(str(task_1_source), "1k", root)  # what Prefect's cache keeps for the ingest task
    s3_filesystem(object_store).delete_dir(f"{object_store[1]}/gone/raw")
    with pytest.raises(DataError, match="the ingested files are gone .*ingest the source again"):
        BABI.tokenise(raw, root)
    assert bucket_keys(object_store, "gone") == []


def test_a_bad_line_in_a_file_on_s3_names_the_object_and_line(object_store, task_1_source, tmp_path):
    source = shutil.copytree(task_1_source, tmp_path / "source")
    train = source / "qa1_single-supporting-fact_train.txt"
    lines = train.read_text().splitlines(keepends=True)
    lines[6] = "7 Where is Mary?\n"  # a question without its answer
    train.write_text("".join(lines))
    root = s3_uri(object_store, "bad-line")
    raw = ingest_babi(str(source), "1k", root)
    with pytest.raises(DataError) as error:
        BABI.tokenise(raw, root)
    # named without the URI's options, which may carry credentials
    assert error.value.path == storage.join(raw.path, "qa1_babi_train.txt").split("?")[0] and error.value.line == 7
    assert str(error.value).startswith(f"{error.value.path}:7: ") and "has no answer" in str(error.value)
    assert not any(key.startswith("tokens/") for key in bucket_keys(object_store, "bad-line"))


def test_a_data_root_pyarrow_cannot_open_is_refused_naming_it(babi_en):
    with pytest.raises(ConfigError, match=r"nosuch://bucket/data: not a location pyarrow can open"):
        ingest_babi(str(babi_en), "1k", "nosuch://bucket/data")
    for typo in ("nosuch://bucket/data", "s3:/bucket/data", "s3:bucket"):
        with pytest.raises(ValueError, match="data_root"):
            BabiRunConfig(data_root=typo)
    assert BabiRunConfig(data_root="runs/data:v2").data_root == "runs/data:v2"


def test_locations_join_below_a_uri_keep_its_options():
    uri = "s3://bucket/data?endpoint_override=host:9000&scheme=http"
    assert storage.join(uri, "tokens", "a.parquet") == "s3://bucket/data/tokens/a.parquet?" + uri.split("?")[1]
    assert storage.join("s3://bucket/data/", "x") == "s3://bucket/data/x"
    assert storage.join("data", "x") == "data/x"
    assert storage.absolute("s3://bucket/data") == "s3://bucket/data"
    assert storage.absolute("data").endswith("/data") and storage.absolute("data").startswith("/")
