"""The visual QA flow: the DAG of flows/run.py on SHAPES (images and questions), with its typed configuration
(the Prefect UI's form)."""

from __future__ import annotations

from prefect import flow

from dmn.apps.vqa import VqaRunConfig
from dmn.operations_config import Gate
from flows.run import run_application


@flow(name="dmn-vqa", log_prints=False)
def vqa_flow(
    config: VqaRunConfig = VqaRunConfig(),  # noqa: B008 (the UI form shows the defaults)
    gate: Gate = Gate(),  # noqa: B008
) -> dict:
    """Train, evaluate and register a DMN+ that answers questions about images (visual input module)."""
    return run_application("vqa", config, gate)
