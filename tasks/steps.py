"""The Prefect tasks of every application's flow. Each calls one `dmn` function; caches key on content
digests and on the code the step runs (`dmn.pipeline.step_code`), not on the whole package.

Tasks take the application's name (a string: a stable cache input) and look the application up.
Retries are for transient failures only (a download, the object store of the data root or the tracking
server that blips): bad data fails at once, with the DataError naming the file and line.
"""

from __future__ import annotations

import logging
import sys

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy
from prefect.runtime import task_run

from dmn import storage
from dmn.apps import application
from dmn.apps.base import RunConfig
from dmn.checkpoint import load_checkpoint
from dmn.config import DistributedConfig, ModelConfig, TrainConfig
from dmn.data.fetch import TransientSourceError
from dmn.data.parquet import TokenisedData
from dmn.distributed import launch
from dmn.errors import DMNError
from dmn.html_report import attention_examples, render_html
from dmn.operations_config import Gate, PromotionConfig
from dmn.pipeline import evaluate_unit, step_code, train_joint, train_unit
from dmn.promotion import Decision, apply_promotion, champion_report, promote_if_first
from dmn.registry import RegisteredVersion, register_run
from dmn.report import build_report, report_markdown
from dmn.train import share_cores


class UserErrorWithoutTraceback(logging.Filter):
    """Prefect logs a failed task or flow run with its traceback. Bad input (a DMNError) names the file and
    line, or the parameter, in its message: that line alone says what to fix, in the terminal and in the UI."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DMNError):
            record.exc_info = record.exc_text = None
        return True


for _run_logger in ("prefect.task_runs", "prefect.flow_runs"):  # the loggers of Prefect's run engines, in the
    # flow's process and in the process pool's (which import this module, not the flows)
    logging.getLogger(_run_logger).addFilter(UserErrorWithoutTraceback())


def _code_of(step: str) -> CacheKeyFnPolicy:
    """Keys on the code `step` runs for the task's application (its `app_name` input)."""
    return CacheKeyFnPolicy(cache_key_fn=lambda context, inputs: step_code(application(inputs["app_name"]), step))


def is_transient(task, task_run, state) -> bool:
    error = state.result(raise_on_failure=False)
    # pyarrow raises a bare OSError for an object store's network and service errors (a missing or a
    # forbidden file raises a subclass, not retried); a full local disk is retried too: two short waits
    return isinstance(error, (TransientSourceError, ConnectionError, TimeoutError)) or type(error) is OSError


# tasks that read or write the data root or the tracking server: a blip of either is retried
RETRY_TRANSIENT = dict(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=is_transient)


def _ingest_key(context, inputs) -> str | None:
    """The source's content, not its path: an edited folder or a new tarball misses the cache. And the units
    asked for, where ingest checks that the source holds them (`Application.ingest_checks_units`: bAbI's
    tasks, the visual QA data sets), so a run asking for others checks again. None (not cached) where the
    content is unknown before fetching (a hub dataset, a URL without sha256) or is not a data set's (the
    ingest says what is wrong with it).

    The task's code is part of this one key, not a policy added to it: Prefect's sum of policies drops a part
    that is None and would cache every source of unknown content on the code alone."""
    app, config = application(inputs["app_name"]), inputs["config"]
    try:
        fingerprint = app.source_fingerprint(config)
    except DMNError:
        return None
    if fingerprint is None:
        return None
    units = ",".join(sorted(map(str, set(getattr(config, app.unit_field))))) if app.ingest_checks_units else ""
    code = f"{TASK_SOURCE.compute_key(context, inputs, None)}:{step_code(app, 'ingest')}"
    return f"{app.name}:{fingerprint}:{units}:{inputs['data_root']}:{code}"


@task(
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_ingest_key),
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=is_transient,
)
def ingest(app_name: str, config: RunConfig, data_root: str):
    """Fetch and check the raw files of the run's data set."""
    raw = application(app_name).ingest(config, data_root)
    get_run_logger().info("ingested %s: digest %s", config.source, raw.digest)
    return raw


@task(cache_policy=INPUTS + TASK_SOURCE + _code_of("tokenise"), **RETRY_TRANSIENT)
def tokenise(app_name: str, raw, data_root: str) -> TokenisedData:
    """Parse and tokenise into Parquet, one partition per unit."""
    dataset = application(app_name).tokenise(raw, data_root)
    get_run_logger().info("tokenised %d units into %s", len(dataset.units), dataset.path)
    return dataset


def _train_run_name() -> str:
    """train-APPLICATION-UNIT-seed-SEED, and the settings variant where it is not the plain one."""
    parameters = task_run.parameters
    app = application(parameters["app_name"])
    unit, settings = parameters["unit"], parameters["settings"]
    joint = isinstance(unit, tuple)  # one model of several units (flows/run.py), their settings each their own
    variant = "joint" if joint else app.variant_title(settings)
    name = f"train-{app.name}-{'joint' if joint else unit}-seed-{parameters['seed']}"
    return f"{name} ({variant})" if variant else name


@task(
    # how many trainings share the machine changes how fast, not what is trained
    cache_policy=(INPUTS - "trainings") + TASK_SOURCE + _code_of("train"),
    task_run_name=_train_run_name,
    **RETRY_TRANSIENT,
)
def train(
    app_name: str,
    dataset: TokenisedData,
    unit,
    settings: dict,
    seed: int,
    model: ModelConfig,
    train: TrainConfig,
    data_root: str,
    distributed: DistributedConfig,
    trainings: int = 1,
) -> str | dict:
    """Train one DMN on one unit with one seed (data-parallel when asked); returns its checkpoint. `trainings`:
    how many run at once (flows/run.py: several run in processes of their own), each with its share of the
    cores. A tuple of units trains one model on all of them (`settings`: each unit's) and returns each unit's
    checkpoint of it (dmn.pipeline.train_joint)."""
    app = application(app_name)
    logger = get_run_logger()
    joint = isinstance(unit, tuple)  # one model of several units (flows/run.py)

    def log_epoch(record: dict) -> None:
        level = logging.INFO if record["epoch"] % 10 == 0 else logging.DEBUG
        logger.log(
            level,
            "%s %s epoch %d: train loss %.4f, valid loss %.4f, valid accuracy %.3f",
            app.unit_title,
            "joint " + ",".join(map(str, unit)) if joint else unit,
            record["epoch"],
            record["train_loss"],
            record["valid_loss"],
            record["valid_accuracy"],
        )

    train = train.model_copy(update={"seed": seed})
    trainer = train_joint if joint else train_unit
    args = (app, dataset, list(unit) if joint else unit, settings, model, train, storage.join(data_root, "models"))
    if distributed.distributed:  # workers are other processes: they log to their own stderr
        path = launch(trainer, args, distributed, train.device, trainings)
    else:
        if trainings > 1:
            share_cores(trainings)
        path = trainer(*args, progress=sys.stderr.isatty() and trainings == 1, on_epoch=log_epoch)
    logger.info("%s %s (seed %d, settings %s) trained: %s", app.unit_title, unit, seed, settings, path)
    return path


@task(
    cache_policy=INPUTS + TASK_SOURCE + _code_of("evaluate"),
    task_run_name="evaluate-{app_name}-{unit}",
    **RETRY_TRANSIENT,
)
def evaluate(app_name: str, dataset: TokenisedData, unit, checkpoint: str) -> dict:
    """Test-split metrics of one unit's model."""
    app = application(app_name)
    result = evaluate_unit(app, dataset, unit, checkpoint)
    get_run_logger().info("%s %s: test accuracy %.3f", app.unit_title, unit, result["accuracy"])
    return result


@task
def report(app_name: str, config: RunConfig, dataset: TokenisedData, results: list[dict], training_digest: str) -> dict:
    """Build the evaluation report and show it in the Prefect UI."""
    document = build_report(application(app_name), config, dataset, results, training_digest)
    create_markdown_artifact(
        markdown=report_markdown(document), key=f"{config.model_name}-evaluation", description="test report"
    )
    return document


@task(**RETRY_TRANSIENT)
def register(
    app_name: str, config: RunConfig, dataset: TokenisedData, checkpoints: dict, document: dict
) -> RegisteredVersion:
    """Log the run to MLflow and register the models (or find the version already registered)."""
    app = application(app_name)
    histories = {unit: load_checkpoint(path)[1]["history"] for unit, path in checkpoints.items()}

    def audit_page() -> str:
        examples = attention_examples(app, dataset, checkpoints)
        return render_html(document, histories, examples, champion_report(config))

    version = register_run(
        app, config, dataset, checkpoints, document, report_markdown(document), histories, audit_page
    )
    verb = "registered" if version.created else "already registered as"
    get_run_logger().info("%s %s version %s", verb, version.name, version.version)
    return version


def publish_decision(decision: Decision, model_name: str) -> None:
    """A promotion decision as a Prefect artifact and a log line (it is also a tag of the version)."""
    create_markdown_artifact(
        key=f"{model_name}-decision",
        markdown=(
            f"**{decision.action}** {model_name} version {decision.version}: {decision.reason}\n\n"
            f"champion: {decision.champion_before} -> {decision.champion_after} ({decision.at})"
        ),
        description="promotion decision",
    )
    get_run_logger().info("%s version %s: %s", decision.action, decision.version, decision.reason)


@task(**RETRY_TRANSIENT)
def promote_version(config: PromotionConfig) -> Decision:
    """Gate the version and move `champion` if it passes (all or nothing); record the decision."""
    decision = apply_promotion(config)
    publish_decision(decision, config.model_name)
    return decision


@task(**RETRY_TRANSIENT)
def promote_first(model_name: str, version: str, gate: Gate, tracking_uri: str | None) -> Decision | None:
    """A model's first version: champion if it clears the first champion's bar; nothing once there is one."""
    decision = promote_if_first(model_name, version, gate, tracking_uri)
    if decision is not None:
        publish_decision(decision, model_name)
    return decision
