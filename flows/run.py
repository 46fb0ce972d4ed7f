"""The DAG every application runs: ingest -> tokenise -> train (one model per unit and seed) -> evaluate ->
report -> register (-> first champion, when the model has none); a unit is trained once per seed and per
settings variant, and the best of them on validation is kept. An application's flow (flows/babi.py...) is
this with its typed configuration."""

from __future__ import annotations

import inspect

from prefect import get_run_logger
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from dmn import storage
from dmn.apps import application
from dmn.apps.base import RunConfig
from dmn.operations_config import Gate
from dmn.pipeline import best_checkpoint, training_digest
from dmn.train import concurrent_trainings
from tasks.steps import evaluate, ingest, promote_first, register, report, tokenise, train


def run_application(app_name: str, config: RunConfig, gate: Gate) -> dict:
    """Run the DAG of `app_name` inside the calling flow; returns {"report", "version", "decision"} (None on
    nodes other than 0, which only train). A new version of a model with no champion yet becomes champion if
    it clears `gate`'s first-champion bar ("decision"; None when there is a champion or nothing was new)."""
    app = application(app_name)
    data_root = storage.absolute(config.data_root)  # cache entries must not depend on the working directory
    raw = _fresh(ingest, ingest(app_name, config, data_root), app_name, config, data_root)
    dataset = _fresh(tokenise, tokenise(app_name, raw, data_root), app_name, raw, data_root)
    units = app.units(config)
    dataset.require(units)
    variants = {unit: app.setting_variants(config, unit, dataset) for unit in units}
    seeds = config.seeds or [config.train.seed]
    runs = [(unit, seed, settings) for unit in units for seed in seeds for settings in variants[unit]]
    trainings = concurrent_trainings(config.concurrency, len(runs), config.train.device, config.distributed)
    training = (config.model, config.train, data_root, config.distributed)
    with _trainers(trainings) as trainers:
        futures = [
            trainers.submit(
                train, dict(zip(TRAIN_PARAMETERS, (app_name, dataset, unit, settings, seed, *training, trainings)))
            )
            for unit, seed, settings in runs
        ]
        paths = [future.result() for future in futures]
    if config.distributed.node_rank != 0:  # node 0 holds rank 0: it writes the checkpoints, evaluates, registers
        get_run_logger().info("node %d: training done; node 0 evaluates and registers", config.distributed.node_rank)
        return {"report": None, "version": None, "decision": None}
    paths = [
        _fresh(train, path, app_name, dataset, unit, settings, seed, *training)
        for (unit, seed, settings), path in zip(runs, paths)
    ]
    # restarts and variants: keep, per unit, the best model (the paper: the lowest validation loss of its
    # restarts; see TrainConfig.select_by)
    checkpoints = {
        u: best_checkpoint([p for (unit, _, _), p in zip(runs, paths) if unit == u], config.train.select_by)
        for u in units
    }
    results = [evaluate(app_name, dataset, u, checkpoints[u]) for u in units]
    digest = training_digest(app, dataset.digest, units, variants, config.model, config.train, seeds)
    document = report(app_name, config, dataset, results, digest)
    version = register(app_name, config, dataset, checkpoints, document)
    decision = promote_first(config.model_name, version.version, gate, config.tracking_uri) if version.created else None
    return {"report": document, "version": version, "decision": decision}


TRAIN_PARAMETERS = list(inspect.signature(train.fn).parameters)


def _trainers(trainings: int) -> TaskRunner:
    """Where the trainings run: one at a time in this flow's process, or `trainings` at once in as many processes
    (threads of one process would queue on the interpreter's lock between the small operations of a DMN)."""
    return ProcessPoolTaskRunner(max_workers=trainings) if trainings > 1 else ThreadPoolTaskRunner(max_workers=1)


def _fresh(task, result, *args):
    """`result` of `task(*args)`, or the task run anew when `result` came from the cache and points at files
    removed since (Prefect's cache keys on the inputs and cannot know)."""
    stored = storage.exists(result) if isinstance(result, str) else result.is_stored()
    if stored:
        return result
    get_run_logger().warning("%s: the files of its cached result are gone; running it again", task.name)
    return task.with_options(refresh_cache=True)(*args)
