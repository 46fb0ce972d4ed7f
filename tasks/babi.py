"""Prefect tasks of the bAbI flow. Each calls one `dmn` function; caches key on content digests and code.

Retries are for transient failures only (a download, the object store of the data root or the tracking
server that blips): bad data fails at once, with the DataError naming the file and line.
"""

from __future__ import annotations

import logging
import sys

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy

from dmn import storage
from dmn.babi import evaluate_babi_task, train_babi_task
from dmn.checkpoint import load_checkpoint
from dmn.config import BabiRunConfig, DistributedConfig, ModelConfig, TrainConfig
from dmn.data.parquet import TokenisedBabi, tokenise_babi
from dmn.data.sources import RawBabi, TransientSourceError, ingest_babi, source_fingerprint
from dmn.distributed import launch
from dmn.html_report import attention_examples, render_html
from dmn.promotion import champion_report
from dmn.registry import RegisteredVersion, register_babi_run
from dmn.report import build_report, report_markdown
from dmn.version import code_digest

# the model code lives in dmn/, not in the task's body: key on both
CODE = CacheKeyFnPolicy(cache_key_fn=lambda context, inputs: code_digest())
CONTENT = INPUTS + TASK_SOURCE + CODE


def is_transient(task, task_run, state) -> bool:
    error = state.result(raise_on_failure=False)
    # pyarrow raises a bare OSError for an object store's network and service errors (a missing or a
    # forbidden file raises a subclass, not retried); a full local disk is retried too: two short waits
    return isinstance(error, (TransientSourceError, ConnectionError, TimeoutError)) or type(error) is OSError


# tasks that read or write the data root or the tracking server: a blip of either is retried
RETRY_TRANSIENT = dict(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=is_transient)


def _ingest_key(context, inputs) -> str | None:
    """The source's content, not its path: an edited folder or a new tarball misses the cache.
    None (not cached) where the content is unknown before fetching: a hub dataset, a URL without sha256."""
    fingerprint = source_fingerprint(inputs["source"], inputs["size"], inputs["sha256"])
    return None if fingerprint is None else f"{fingerprint}:{inputs['sha256']}:{inputs['data_root']}"


@task(
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_ingest_key) + TASK_SOURCE + CODE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=is_transient,
)
def ingest(source: str, size: str, data_root: str, sha256: str | None) -> RawBabi:
    """Fetch and check the raw bAbI files of one size."""
    raw = ingest_babi(source, size, data_root, sha256)
    get_run_logger().info("ingested %s (%s): digest %s", source, size, raw.digest)
    return raw


@task(cache_policy=CONTENT, **RETRY_TRANSIENT)
def tokenise(raw: RawBabi, data_root: str) -> TokenisedBabi:
    """Parse and tokenise into Parquet, one partition per bAbI task."""
    dataset = tokenise_babi(raw, data_root)
    get_run_logger().info("tokenised %d bAbI tasks into %s", len(dataset.babi_tasks), dataset.path)
    return dataset


@task(cache_policy=CONTENT, task_run_name="train-babi-task-{babi_task}-seed-{seed}", **RETRY_TRANSIENT)
def train(
    dataset: TokenisedBabi,
    babi_task: int,
    seed: int,
    model: ModelConfig,
    train: TrainConfig,
    data_root: str,
    distributed: DistributedConfig,
) -> str:
    """Train one DMN+ on one bAbI task with one seed (data-parallel when asked); returns its checkpoint."""
    logger = get_run_logger()

    def log_epoch(record: dict) -> None:
        level = logging.INFO if record["epoch"] % 10 == 0 else logging.DEBUG
        logger.log(
            level,
            "bAbI task %d epoch %d: train loss %.4f, valid loss %.4f, valid accuracy %.3f",
            babi_task,
            record["epoch"],
            record["train_loss"],
            record["valid_loss"],
            record["valid_accuracy"],
        )

    train = train.model_copy(update={"seed": seed})
    if distributed.distributed:  # workers are other processes: they log to their own stderr
        args = (dataset, babi_task, model, train, storage.join(data_root, "models"))
        path = launch(train_babi_task, args, distributed, train.device)
    else:
        path = train_babi_task(
            dataset,
            babi_task,
            model,
            train,
            storage.join(data_root, "models"),
            progress=sys.stderr.isatty(),
            on_epoch=log_epoch,
        )
    logger.info("bAbI task %d (seed %d) trained: %s", babi_task, seed, path)
    return path


@task(cache_policy=CONTENT, task_run_name="evaluate-babi-task-{babi_task}", **RETRY_TRANSIENT)
def evaluate(dataset: TokenisedBabi, babi_task: int, checkpoint: str) -> dict:
    """Test-split metrics of one bAbI task's model."""
    result = evaluate_babi_task(dataset, babi_task, checkpoint)
    get_run_logger().info("bAbI task %d: test accuracy %.3f", babi_task, result["accuracy"])
    return result


@task
def report(config: BabiRunConfig, dataset: TokenisedBabi, results: list[dict], training_digest: str) -> dict:
    """Build the evaluation report and show it in the Prefect UI."""
    document = build_report(config, dataset, results, training_digest)
    create_markdown_artifact(
        markdown=report_markdown(document), key=f"{config.model_name}-evaluation", description="bAbI test report"
    )
    return document


@task(**RETRY_TRANSIENT)
def register(
    config: BabiRunConfig, dataset: TokenisedBabi, checkpoints: dict[int, str], document: dict
) -> RegisteredVersion:
    """Log the run to MLflow and register the models (or find the version already registered)."""
    histories = {t: load_checkpoint(path)[1]["history"] for t, path in checkpoints.items()}

    def audit_page() -> str:
        return render_html(document, histories, attention_examples(dataset, checkpoints), champion_report(config))

    version = register_babi_run(
        config, dataset, checkpoints, document, report_markdown(document), histories, audit_page
    )
    verb = "registered" if version.created else "already registered as"
    get_run_logger().info("%s %s version %s", verb, version.name, version.version)
    return version
