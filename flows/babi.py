"""The bAbI flow: ingest -> tokenise -> train (one model per bAbI task) -> evaluate -> report -> register."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dmn.babi import training_digest
from dmn.config import BabiRunConfig
from tasks.babi import evaluate, ingest, register, report, tokenise, train


@flow(name="dmn-babi", log_prints=False)
def babi_flow(config: BabiRunConfig = BabiRunConfig()) -> dict:  # noqa: B008 (the UI form shows the defaults)
    """Train, evaluate and register DMN+ models for the requested bAbI tasks."""
    data_root = str(Path(config.data_root).resolve())  # cache entries must not depend on the working directory
    raw = ingest(config.source, config.size, data_root, config.source_sha256)
    dataset = tokenise(raw, data_root)
    dataset.require(config.babi_tasks)
    checkpoints = {t: train(dataset, t, config.model, config.train, data_root) for t in config.babi_tasks}
    results = [evaluate(dataset, t, checkpoints[t]) for t in config.babi_tasks]
    digest = training_digest(dataset.digest, config.babi_tasks, config.model, config.train)
    document = report(config, dataset, results, digest)
    version = register(config, dataset, checkpoints, document)
    return {"report": document, "version": version}
