"""Moving a registered version between MLflow registries as one file: `dmn export MODEL_URI FILE`, then
`dmn import FILE` against another tracking server (the same file imported again finds its version).

The file is a gzipped tar of the version's MLflow model (code, weights, vocabulary, signature), its run's
report folder, and `manifest.json`: where it came from (tracking URI, name, version, run), its lineage tags,
the run's parameters and test metrics, and the sha256 of every other member. An import checks every digest
before it writes anything, then logs a run and registers a new version (the challenger; the first champion's
bar is not applied: promote it with `dmn promote`) whose tags keep the lineage and name the source.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlflow
from mlflow.tracking import MlflowClient

from dmn.data.fetch import extract_archive, sha256_file
from dmn.errors import DataError
from dmn.promotion import CHALLENGER
from dmn.reevaluate import resolve
from dmn.registry import RegisteredVersion

FORMAT = "dmn-export/1"
MANIFEST = "manifest.json"
LINEAGE_TAGS = ("training_digest", "data_digest", "code_version", "application", "architecture", "units")


def export_version(model_uri: str, path: str | Path, tracking_uri: str | None = None) -> dict:
    """Write the version `model_uri` (models:/NAME/VERSION or models:/NAME@ALIAS) to `path`, whole or not at
    all; returns the manifest. ConfigError when there is no such version."""
    if tracking_uri:  # models:/ URIs are resolved in the current registry, whatever download_artifacts is told
        mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    version = resolve(client, model_uri)
    run = client.get_run(version.run_id)
    path = Path(path)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "export"
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{version.name}/{version.version}", dst_path=str(root / "model"),
            tracking_uri=tracking_uri,
        )  # fmt: skip
        client.download_artifacts(version.run_id, "report", str(root))
        files = sorted(p for p in root.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT,
            "source": {
                "tracking_uri": without_credentials(tracking_uri or mlflow.get_tracking_uri()),
                "model_uri": model_uri,
                "name": version.name,
                "version": str(version.version),
                "run_id": version.run_id,
            },
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "tags": {k: v for k, v in version.tags.items() if k in LINEAGE_TAGS},
            "params": run.data.params,
            "metrics": {k: v for k, v in run.data.metrics.items() if ".test_" in k or k.startswith("test_")},
            "files": {str(p.relative_to(root)): sha256_file(p) for p in files},
        }
        (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with tarfile.open(partial, "w:gz") as archive:
                archive.add(root / MANIFEST, MANIFEST)
                for file in files:
                    archive.add(file, str(file.relative_to(root)))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return manifest


def import_version(path: str | Path, model_name: str | None = None, tracking_uri: str | None = None):
    """Register the exported version in `path` as a new version of `model_name` (default: its own name);
    returns (RegisteredVersion, manifest). DataError naming the file and member when a digest differs or the
    file is not an export; nothing is written then."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    with tempfile.TemporaryDirectory() as folder:
        root = extract_archive(path, Path(folder) / "import", lambda name: True)
        manifest = _verified_manifest(path, root)
        source = manifest["source"]
        name = model_name or source["name"]
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        client = MlflowClient()
        file_digest = sha256_file(path)
        done = _imported_before(client, name, file_digest)
        if done is not None:  # the same file again (a retry): the version it registered
            return RegisteredVersion(name, str(done.version), done.run_id, created=False), manifest
        mlflow.set_experiment(name)
        origin = f"models:/{source['name']}/{source['version']}"
        imported_from = f"{source['tracking_uri']} {origin} (run {source['run_id']})"
        tags = {**manifest["tags"], "imported_from": imported_from, "import_sha256": file_digest}
        with mlflow.start_run(tags=tags) as run:
            mlflow.log_params(manifest["params"])
            mlflow.log_metrics(manifest["metrics"])
            mlflow.log_artifacts(str(root / "report"), "report")
            mlflow.log_artifacts(str(root / "model"), "model")
        version = str(mlflow.register_model(f"runs:/{run.info.run_id}/model", name, tags=tags).version)
        client.set_registered_model_alias(name, CHALLENGER, version)
    return RegisteredVersion(name, version, run.info.run_id, created=True), manifest


def _imported_before(client: MlflowClient, name: str, file_digest: str):
    """The version of `name` that an import of the same file registered, or None."""
    if not client.search_registered_models(f"name = '{name}'"):
        return None
    found = [v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get("import_sha256") == file_digest]
    return min(found, key=lambda v: int(v.version)) if found else None


def without_credentials(uri: str) -> str:
    """`uri` without a user name and password (postgresql://user:secret@host/db -> postgresql://host/db)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


def _verified_manifest(path: Path, root: Path) -> dict:
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(path, f"not a dmn export: {MANIFEST} is missing or unreadable ({error})") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("files"), dict)
    ):
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(path, f"not a {FORMAT} export (its {MANIFEST} says {found!r})")
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {MANIFEST}
    for member in sorted(present | set(manifest["files"])):
        expected = manifest["files"].get(member)
        if expected is None:
            raise DataError(path, f"member {member!r} is not listed in the manifest")
        if member not in present:
            raise DataError(path, f"member {member!r} is missing")
        if sha256_file(root / member) != expected:
            raise DataError(path, f"member {member!r}: sha256 differs from the manifest's (corrupted or edited)")
    return manifest


def digest_line(path: str | Path) -> str:
    """'sha256  FILE', as sha256sum prints it: to publish beside the file."""
    return f"{sha256_file(Path(path))}  {path}"
