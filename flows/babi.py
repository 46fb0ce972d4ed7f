"""The bAbI flow: ingest -> tokenise -> train (one model per bAbI task) -> evaluate -> report -> register."""

from __future__ import annotations

from prefect import flow, get_run_logger

from dmn import storage
from dmn.babi import best_checkpoint, training_digest
from dmn.config import BabiRunConfig
from dmn.data.parquet import TokenisedBabi
from dmn.data.sources import RawBabi
from tasks.babi import evaluate, ingest, register, report, tokenise, train


@flow(name="dmn-babi", log_prints=False)
def babi_flow(config: BabiRunConfig = BabiRunConfig()) -> dict:  # noqa: B008 (the UI form shows the defaults)
    """Train, evaluate and register DMN+ models for the requested bAbI tasks."""
    data_root = storage.absolute(config.data_root)  # cache entries must not depend on the working directory
    source = (config.source, config.size, data_root, config.source_sha256)
    raw = _fresh(ingest, ingest(*source), RawBabi.is_stored, *source)
    dataset = _fresh(tokenise, tokenise(raw, data_root), TokenisedBabi.is_stored, raw, data_root)
    dataset.require(config.babi_tasks)
    seeds = config.seeds or [config.train.seed]
    runs = [(babi_task, seed) for babi_task in config.babi_tasks for seed in seeds]
    training = (config.model, config.train, data_root, config.distributed)
    futures = []
    for i, (babi_task, seed) in enumerate(runs):
        if i >= config.concurrency:  # at most `concurrency` trainings in flight
            futures[i - config.concurrency].wait()
        futures.append(train.submit(dataset, babi_task, seed, *training))
    paths = [future.result() for future in futures]
    if config.distributed.node_rank != 0:  # node 0 holds rank 0: it writes the checkpoints, evaluates, registers
        get_run_logger().info("node %d: training done; node 0 evaluates and registers", config.distributed.node_rank)
        return {"report": None, "version": None}
    paths = [_fresh(train, path, storage.exists, dataset, t, seed, *training) for (t, seed), path in zip(runs, paths)]
    # restarts: keep, per bAbI task, the seed with the lowest validation loss (the paper's selection)
    checkpoints = {
        t: best_checkpoint([path for (babi_task, _), path in zip(runs, paths) if babi_task == t])
        for t in config.babi_tasks
    }
    results = [evaluate(dataset, t, checkpoints[t]) for t in config.babi_tasks]
    digest = training_digest(dataset.digest, config.babi_tasks, config.model, config.train, seeds)
    document = report(config, dataset, results, digest)
    version = register(config, dataset, checkpoints, document)
    return {"report": document, "version": version}


def _fresh(task, result, is_stored, *args):
    """`result` of `task(*args)`, or the task run anew when `result` came from the cache and points at files
    removed since (Prefect's cache keys on the inputs and cannot know)."""
    if is_stored(result):
        return result
    get_run_logger().warning("%s: the files of its cached result are gone; running it again", task.name)
    return task.with_options(refresh_cache=True)(*args)
