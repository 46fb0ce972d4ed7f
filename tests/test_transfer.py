"""`dmn export` / `dmn import`: a registered version moved between two MLflow registries (SQLite) as one file,
answering the same in the second, its lineage kept; a corrupted or foreign file refused, nothing written."""

import tarfile

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from dmn.errors import DataError
from dmn.transfer import export_version, import_version

REQUESTS = pd.DataFrame(
    {
        "story": ["Mary went to the garden.\nJohn moved to the office.", "Sandra journeyed to the hallway."],
        "question": ["Where is John?", "Where is Sandra?"],
    }
)


def _predict(tracking_uri: str, model_uri: str) -> list:
    mlflow.set_tracking_uri(tracking_uri)
    return list(mlflow.pyfunc.load_model(model_uri).predict(REQUESTS))


def test_a_version_moves_to_another_registry_with_its_lineage_and_answers_the_same(trained, tmp_path, monkeypatch):
    _, config, _ = trained
    monkeypatch.chdir(tmp_path)  # the second registry's artifacts
    exported = tmp_path / "dmn-babi-1.tar.gz"
    manifest = export_version(f"models:/{config.model_name}@champion", exported, config.tracking_uri)
    assert manifest["source"]["version"] == "1" and "model/MLmodel" in manifest["files"]

    other = f"sqlite:///{tmp_path / 'other.db'}"
    version, _ = import_version(exported, "moved", other)
    client = MlflowClient(other)
    registered = client.get_model_version("moved", version.version)
    original = MlflowClient(config.tracking_uri).get_model_version(config.model_name, "1")
    assert registered.tags["training_digest"] == original.tags["training_digest"]
    assert (
        registered.tags["imported_from"]
        == f"{config.tracking_uri} models:/{config.model_name}/1 (run {original.run_id})"
    )
    assert str(client.get_model_version_by_alias("moved", "challenger").version) == version.version
    assert client.get_run(registered.run_id).data.metrics["babi_task_1.test_accuracy"] >= 0.95
    assert _predict(other, "models:/moved/1") == _predict(config.tracking_uri, f"models:/{config.model_name}/1")
    again, _ = import_version(exported, "moved", other)  # the same file again: its version, nothing new
    assert (again.version, again.created) == ("1", False) and len(client.search_model_versions("name = 'moved'")) == 1


def test_a_corrupted_or_foreign_file_is_refused_and_nothing_is_registered(trained, tmp_path, monkeypatch):
    _, config, _ = trained
    monkeypatch.chdir(tmp_path)
    exported = tmp_path / "export.tar.gz"
    export_version(f"models:/{config.model_name}/1", exported, config.tracking_uri)
    corrupted = tmp_path / "corrupted.tar.gz"
    with tarfile.open(exported) as source, tarfile.open(corrupted, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name == "model/artifacts/vocab.json":
                data = data.replace(b'"kitchen"', b'"kitchens"')
                member.size = len(data)
            target.addfile(member, __import__("io").BytesIO(data))
    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as target:
        target.add(__file__, "notes.py")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with pytest.raises(DataError, match="member 'model/artifacts/vocab.json': sha256 differs"):
        import_version(corrupted, "moved", other)
    with pytest.raises(DataError, match="not a dmn export: manifest.json is missing"):
        import_version(foreign, "moved", other)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated.tar.gz: not a readable tar or zip archive"):
        import_version(truncated, "moved", other)
    assert MlflowClient(other).search_registered_models() == []
