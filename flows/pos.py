"""The part-of-speech tagging flow: the DAG of flows/run.py on Penn Treebank tagged text, with its typed configuration
(the Prefect UI's form)."""

from __future__ import annotations

from prefect import flow

from dmn.apps.pos import PosRunConfig
from dmn.operations_config import Gate
from flows.run import run_application


@flow(name="dmn-pos", log_prints=False)
def pos_flow(
    config: PosRunConfig = PosRunConfig(),  # noqa: B008 (the UI form shows the defaults)
    gate: Gate = Gate(),  # noqa: B008
) -> dict:
    """Train, evaluate and register a DMN part-of-speech tagger."""
    return run_application("pos", config, gate)
