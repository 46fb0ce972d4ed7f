"""Evaluate a registered version (or alias) against a dataset: the same metrics and audit report as a
training run, logged as an MLflow run of the experiment `<name>-evaluations` and linked from the version."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dmn.apps import application
from dmn.checkpoint import load_checkpoint
from dmn.config import ModelConfig, TrainConfig
from dmn.data.vocab import Vocabulary
from dmn.errors import ConfigError
from dmn.html_report import attention_examples, render_html
from dmn.pipeline import evaluate_unit
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
    """(report, run id) of the version's models on the test split of `source` (`size`: a bAbI size).

    The source may be another dataset that the application reads (another bAbI copy, WSJ sections, a CoNLL-U
    treebank): it is read through the version's own vocabulary, the words missing from it as the unknown word and
    the answers the version cannot give as wrong; the report counts both."""
    client = MlflowClient(tracking_uri) if tracking_uri else MlflowClient()
    version = resolve(client, model_uri)
    with tempfile.TemporaryDirectory() as folder:
        model_dir = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{version.name}/{version.version}", dst_path=folder, tracking_uri=tracking_uri
        )
        local = Path(model_dir) / "artifacts"  # the pyfunc's artifacts: vocab.json and a checkpoint per unit
        metas = {str(p): load_checkpoint(p)[1] for p in sorted(local.glob("*.pt"))}
        if not metas:
            raise ConfigError(f"{model_uri}: this version holds no model checkpoint")
        checkpoints = {meta["unit"]: path for path, meta in metas.items()}
        first = next(iter(metas.values()))
        app = application(first["application"])
        trained = {k: v for k, v in first["train_config"].items() if k in TrainConfig.model_fields}
        config = app.config_type(
            source=source,
            **({"size": size} if "size" in app.config_type.model_fields else {}),  # bAbI's 1k or 10k
            data_root=data_root,
            tracking_uri=tracking_uri,
            model_name=version.name,
            model=ModelConfig(**first["model_config"]),
            train=TrainConfig(**trained),  # the report says how the version was trained
            **{app.unit_field: sorted(checkpoints)},
        )
        dataset = app.tokenise(app.ingest(config, data_root), data_root)
        dataset.require(checkpoints)
        dataset.require_examples(checkpoints, ("test",), source)
        vocab = Vocabulary.load(local / "vocab.json")  # the version's: the dataset's own may number words otherwise
        results = [evaluate_unit(app, dataset, u, path, vocab=vocab) for u, path in sorted(checkpoints.items())]
        report = build_report(app, config, dataset, results, version.tags.get("training_digest", ""))
        report["evaluated"] = {
            "model_uri": model_uri,
            "name": version.name,
            "version": str(version.version),
            **{
                key: sum(r[key] for r in results) for key in ("input_tokens", "unknown_input_tokens", "unknown_answers")
            },
        }
        histories = {u: metas[path]["history"] for u, path in checkpoints.items()}
        examples = attention_examples(app, dataset, checkpoints, vocab=vocab)
        html = render_html(report, histories, examples, champion_report(config))
    experiment = f"{version.name}-evaluations"
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment)
    run = client.create_run(
        client.get_experiment_by_name(experiment).experiment_id,
        tags={"model_version": str(version.version), "data_digest": dataset.digest},
    )
    for result in results:
        client.log_metric(run.info.run_id, f"{app.unit_name}_{result['unit']}.test_accuracy", result["accuracy"])
    client.log_dict(run.info.run_id, report, "report/evaluation.json")
    client.log_text(run.info.run_id, report_markdown(report), "report/evaluation.md")
    client.log_text(run.info.run_id, html, "report/evaluation.html")
    client.set_terminated(run.info.run_id)
    client.set_model_version_tag(version.name, version.version, "last_evaluation_run", run.info.run_id)
    return report, run.info.run_id
