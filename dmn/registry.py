"""Log a run of any application to MLflow and register its models (one per unit) as one version of a
registered model.

A version is found again by its training digest: registering what was already registered returns the
existing version and writes nothing.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import AnyType, Array

import dmn
from dmn import storage
from dmn.apps.base import Application, Column, RunConfig
from dmn.data.parquet import TokenisedData
from dmn.promotion import CHALLENGER


def signature(app: Application) -> ModelSignature:
    """The pyfunc's input columns (the application's, and its unit column, needed only when a version holds
    several units), its output (one answer per row, as the application gives it) and its inference parameter
    `details` (the answers with their probability, unit and unknown words: dmn/serving.py)."""
    columns = [_column(c) for c in app.request_columns]
    # any type: the pyfunc reads and checks it itself, so that a nullable integer column (pandas' Int64 with
    # <NA>, refused by MLflow's integer types) and a JSON number alike name a bAbI task
    unit = ColSpec(AnyType(), app.unit_name, required=False)
    return ModelSignature(
        inputs=Schema([*columns, unit]),
        outputs=Schema([_column(app.output)]),
        params=ParamSchema([ParamSpec("details", DataType.boolean, False)]),
    )


TEST_METRICS = (
    "accuracy", "error", "dev_accuracy", "unknown_word_accuracy", "sentence_accuracy", "support_hit_rate",
    "vqa_accuracy",
)  # fmt: skip


def _column(column: Column) -> ColSpec:
    kinds = {"string": DataType.string, "strings": Array(DataType.string), "image": AnyType()}
    kind = kinds[column.kind]
    return ColSpec(kind, column.name, required=column.required)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    created: bool  # False when an earlier run had registered the same training digest

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def find_version(client: MlflowClient, name: str, training_digest: str):
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.tags.get("training_digest") == training_digest:
            return version
    return None


def flat_params(config: RunConfig) -> dict[str, str]:
    params = {}
    for group, values in config.model_dump(mode="json").items():
        if isinstance(values, dict):
            params.update({f"{group}.{k}": json.dumps(v) if isinstance(v, dict) else v for k, v in values.items()})
        else:
            params[group] = ",".join(map(str, values)) if isinstance(values, list) else values
    return params


def register_run(
    app: Application,
    config: RunConfig,
    dataset: TokenisedData,
    checkpoints: dict,
    report: dict,
    markdown: str,
    histories: dict,
    render_html: Callable[[], str] | None = None,
) -> RegisteredVersion:
    """Log params, metrics, report and the pyfunc model; register it as a new version of config.model_name.

    `render_html` builds the audit page; it is called only when a new version is registered."""
    if config.tracking_uri:
        mlflow.set_tracking_uri(config.tracking_uri)
    client = MlflowClient()
    digest = report["training_digest"]
    existing = find_version(client, config.model_name, digest) if _model_exists(client, config.model_name) else None
    if existing is not None:
        _finish_interrupted_registration(client, config.model_name, str(existing.version))
        return RegisteredVersion(config.model_name, str(existing.version), existing.run_id, created=False)

    mlflow.set_experiment(config.model_name)
    tags = {
        "training_digest": digest,
        "data_digest": dataset.digest,
        "code_version": report["code_version"],
        "application": app.name,
        "architecture": config.model.architecture,
    }
    with mlflow.start_run(tags=tags) as run:
        mlflow.log_params(flat_params(config))
        for unit, history in histories.items():
            for record in history:
                metrics = {f"{app.unit_name}_{unit}.{k}": v for k, v in record.items() if k != "epoch"}
                mlflow.log_metrics(metrics, step=record["epoch"])
        for result in report["units"]:
            prefix = f"{app.unit_name}_{result['unit']}.test"
            mlflow.log_metrics(
                {f"{prefix}_{key}": result[key] for key in TEST_METRICS if isinstance(result.get(key), float)}
            )
        mlflow.log_metric("test_mean_error", report["mean_error"])
        mlflow.log_dict(report, "report/evaluation.json")
        mlflow.log_text(markdown, "report/evaluation.md")
        if render_html is not None:
            mlflow.log_text(render_html(), "report/evaluation.html")

        with tempfile.TemporaryDirectory() as local:  # MLflow logs local files; the data may be in a store
            artifacts = {"vocab": str(storage.local_file(dataset.vocab_path, local))}
            artifacts.update(
                {f"{app.unit_name}_{u}": str(storage.local_file(p, local)) for u, p in checkpoints.items()}
            )
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(dmn.__file__).with_name("mlflow_model.py")),
                artifacts=artifacts,
                code_paths=[str(Path(dmn.__file__).parent)],
                signature=signature(app),
                input_example=_input_example(app, dataset, checkpoints),
                pip_requirements=[
                    f"torch>={torch.__version__.split('+')[0]}",
                    "pandas",
                    f"mlflow=={mlflow.__version__}",
                ],
                metadata={"application": app.name, "units": sorted(checkpoints), "dataset": app.describe(config)},
            )
        # the tags come with the version in one call: a retry after a failure finds it by its digest
        tags["units"] = ",".join(map(str, sorted(checkpoints)))
        version = str(mlflow.register_model(info.model_uri, config.model_name, tags=tags).version)
        client.set_registered_model_alias(config.model_name, CHALLENGER, version)  # a new version is the challenger
    return RegisteredVersion(config.model_name, version, run.info.run_id, created=True)


def _finish_interrupted_registration(client: MlflowClient, name: str, version: str) -> None:
    """A retry after a failure between creating the version and naming it challenger: the newest version,
    never given an alias, becomes the challenger as a first attempt would have made it."""
    newest = max(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    if int(version) == newest and not client.get_model_version(name, version).aliases:
        client.set_registered_model_alias(name, CHALLENGER, version)


def _model_exists(client: MlflowClient, name: str) -> bool:
    return bool(client.search_registered_models(f"name = '{name}'"))


def _input_example(app: Application, dataset: TokenisedData, checkpoints: dict) -> pd.DataFrame:
    unit = min(checkpoints)
    example = {key: [value] for key, value in app.example_request(dataset.read(unit, "test")[0]).items()}
    if len(checkpoints) > 1:
        example[app.unit_name] = [unit]
    return pd.DataFrame(example)
