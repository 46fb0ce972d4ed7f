"""The bAbI flow: ingest -> tokenise -> train (one model per bAbI task) -> evaluate -> report -> register."""

from __future__ import annotations

from prefect import flow

from dmn.babi import training_digest
from dmn.config import BabiRunConfig
from tasks.babi import evaluate, ingest, register, report, tokenise, train


@flow(name="dmn-babi", log_prints=False)
def babi_flow(config: BabiRunConfig = BabiRunConfig()) -> dict:
    """Train, evaluate and register DMN+ models for the requested bAbI tasks."""
    raw = ingest(config.source, config.size, config.data_root, config.source_sha256)
    dataset = tokenise(raw, config.data_root)
    dataset.require(config.babi_tasks)
    checkpoints = {t: train(dataset, t, config.model, config.train, config.data_root) for t in config.babi_tasks}
    results = [evaluate(dataset, t, checkpoints[t]) for t in config.babi_tasks]
    digest = training_digest(dataset.digest, config.babi_tasks, config.model, config.train)
    document = report(config, dataset, results, digest)
    version = register(config, dataset, checkpoints, document)
    return {"report": document, "version": version}
