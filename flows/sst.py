"""The sentiment flow: the DAG of flows/run.py on the Stanford Sentiment Treebank, with its typed configuration
(the Prefect UI's form)."""

from __future__ import annotations

from prefect import flow

from dmn.apps.sst import SstRunConfig
from dmn.operations_config import Gate
from flows.run import run_application


@flow(name="dmn-sst", log_prints=False)
def sst_flow(
    config: SstRunConfig = SstRunConfig(),  # noqa: B008 (the UI form shows the defaults)
    gate: Gate = Gate(),  # noqa: B008
) -> dict:
    """Train, evaluate and register DMN sentiment models (fine-grained and/or binary)."""
    return run_application("sst", config, gate)
