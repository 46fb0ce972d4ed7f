"""The bAbI flow: the DAG of flows/run.py with bAbI's typed configuration (the Prefect UI's form)."""

from __future__ import annotations

from prefect import flow

from dmn.apps.babi import BabiRunConfig
from dmn.operations_config import Gate
from flows.run import run_application


@flow(name="dmn-babi", log_prints=False)
def babi_flow(
    config: BabiRunConfig = BabiRunConfig(),  # noqa: B008 (the UI form shows the defaults)
    gate: Gate = Gate(),  # noqa: B008
) -> dict:
    """Train, evaluate and register DMN models for the requested bAbI tasks."""
    return run_application("babi", config, gate)
