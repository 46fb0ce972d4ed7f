"""The part-of-speech tagging flow: the DAG of flows/run.py on Penn Treebank tagged text, with its typed configuration
(the Prefect UI's form)."""

from __future__ import annotations

from prefect import flow

from dmn.apps.pos import PosRunConfig
from flows.run import run_application


@flow(name="dmn-pos", log_prints=False)
def pos_flow(config: PosRunConfig = PosRunConfig()) -> dict:  # noqa: B008 (the UI form shows the defaults)
    """Train, evaluate and register a DMN part-of-speech tagger."""
    return run_application("pos", config)
