"""Operations flows: retrain (the bAbI flow, then promote if better), promote, rollback.

Parameters are typed pydantic models with defaults and descriptions, so the Prefect UI shows a form.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from dmn import storage
from dmn.apps.babi import BabiRunConfig
from dmn.operations_config import EvaluateConfig, Gate, PromotionConfig, RollbackConfig
from dmn.promotion import Decision
from dmn.promotion import rollback as roll_back
from dmn.reevaluate import evaluate_registered
from dmn.report import report_markdown
from flows.babi import babi_flow
from tasks.steps import promote_version, publish_decision


@flow(name="dmn-evaluate")
def evaluate_flow(config: EvaluateConfig = EvaluateConfig()) -> dict:  # noqa: B008 (UI form defaults)
    """Evaluate a registered version or alias against a dataset; the report goes to MLflow and the UI."""
    report, run_id = evaluate_registered(
        config.model_uri, config.source, config.size, storage.absolute(config.data_root), config.tracking_uri
    )
    create_markdown_artifact(
        key="dmn-evaluation", markdown=report_markdown(report), description=f"{config.model_uri} (run {run_id})"
    )
    return report


@flow(name="dmn-promote")
def promote_flow(config: PromotionConfig = PromotionConfig()) -> Decision:  # noqa: B008 (UI form defaults)
    """Promote a version (default: the challenger) to champion if it passes the gate."""
    return promote_version(config)


@flow(name="dmn-rollback")
def rollback_flow(config: RollbackConfig = RollbackConfig()) -> Decision:  # noqa: B008 (UI form defaults)
    """Move `champion` back to the version it replaced."""
    decision = roll_back(config.model_name, reason=config.reason, tracking_uri=config.tracking_uri)
    publish_decision(decision, config.model_name)
    return decision


@flow(name="dmn-retrain")
def retrain_flow(
    config: BabiRunConfig = BabiRunConfig(),  # noqa: B008 (UI form defaults)
    gate: Gate = Gate(),  # noqa: B008
) -> Decision | None:
    """Ingest -> tokenise -> train -> evaluate -> register (as challenger) -> promote if better (or, with no
    champion yet, if it clears the first champion's bar). The evaluation report is shown on this run too."""
    outcome = babi_flow(config, gate)
    version = outcome["version"]
    if version is None:  # a node other than 0: node 0 promotes
        return None
    create_markdown_artifact(
        key=f"{config.model_name}-evaluation",
        markdown=report_markdown(outcome["report"]),
        description=f"{version.name} version {version.version}",
    )
    if outcome["decision"] is not None:  # the first champion's bar decided
        return outcome["decision"]
    promotion = PromotionConfig(
        model_name=config.model_name, version=version.version, tracking_uri=config.tracking_uri, **gate.model_dump()
    )
    return promote_version(promotion)
