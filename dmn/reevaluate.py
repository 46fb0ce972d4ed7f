"""Evaluate a registered version (or alias) against a dataset: the same metrics and audit report as a
training run, logged as an MLflow run of the experiment `<name>-evaluations` and linked from the version."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dmn.babi import evaluate_babi_task
from dmn.checkpoint import load_checkpoint
from dmn.config import BabiRunConfig
from dmn.data.parquet import tokenise_babi
from dmn.data.sources import ingest_babi
from dmn.data.vocab import Vocabulary
from dmn.errors import ConfigError
from dmn.html_report import attention_examples, render_html
from dmn.promotion import champion_report
from dmn.report import build_report, report_markdown

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


def resolve(client: MlflowClient, model_uri: str):
    """models:/NAME/VERSION or models:/NAME@ALIAS -> the model version; a clear error when absent."""
    match = MODEL_URI.match(model_uri)
    if not match:
        raise ConfigError(f"{model_uri!r} is not models:/NAME/VERSION or models:/NAME@ALIAS")
    try:
        if match["alias"]:
            return client.get_model_version_by_alias(match["name"], match["alias"])
        return client.get_model_version(match["name"], match["version"])
    except MlflowException as error:
        raise ConfigError(f"{model_uri}: no such registered version or alias") from error


def evaluate_registered(
    model_uri: str, source: str = "bundled", size: str = "1k", data_root: str = "data", tracking_uri: str | None = None
) -> tuple[dict, str]:
    """(report, run id) of the version's models on the test split of `source`."""
    client = MlflowClient(tracking_uri) if tracking_uri else MlflowClient()
    version = resolve(client, model_uri)
    with tempfile.TemporaryDirectory() as folder:
        model_dir = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{version.name}/{version.version}", dst_path=folder, tracking_uri=tracking_uri
        )
        local = Path(model_dir) / "artifacts"  # the pyfunc's artifacts: vocab.json, babi_task_N.pt
        checkpoints = {load_checkpoint(p)[1]["babi_task"]: str(p) for p in sorted(local.glob("babi_task_*.pt"))}
        dataset = tokenise_babi(ingest_babi(source, size, data_root), data_root)
        if Vocabulary.load(dataset.vocab_path) != Vocabulary.load(local / "vocab.json"):
            raise ConfigError(
                f"{model_uri}: the dataset {source!r} ({size}) has another vocabulary than this version's: "
                "its word ids would mean other words"
            )
        dataset.require(checkpoints)
        results = [evaluate_babi_task(dataset, t, path) for t, path in sorted(checkpoints.items())]
        config = BabiRunConfig(
            babi_tasks=sorted(checkpoints),
            size=size,
            source=source,
            data_root=data_root,
            tracking_uri=tracking_uri,
            model_name=version.name,
        )
        report = build_report(config, dataset, results, version.tags.get("training_digest", ""))
        histories = {t: load_checkpoint(p)[1]["history"] for t, p in checkpoints.items()}
        html = render_html(report, histories, attention_examples(dataset, checkpoints), champion_report(config))
    experiment = f"{version.name}-evaluations"
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment)
    run = client.create_run(
        client.get_experiment_by_name(experiment).experiment_id,
        tags={"model_version": str(version.version), "data_digest": dataset.digest},
    )
    for result in results:
        client.log_metric(run.info.run_id, f"babi_task_{result['babi_task']}.test_accuracy", result["accuracy"])
    client.log_dict(run.info.run_id, report, "report/evaluation.json")
    client.log_text(run.info.run_id, report_markdown(report), "report/evaluation.md")
    client.log_text(run.info.run_id, html, "report/evaluation.html")
    client.set_terminated(run.info.run_id)
    client.set_model_version_tag(version.name, version.version, "last_evaluation_run", run.info.run_id)
    return report, run.info.run_id
