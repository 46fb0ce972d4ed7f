"""Operations flows: retrain (the bAbI flow, then promote if better), promote, rollback.

Parameters are typed pydantic models with defaults and descriptions, so the Prefect UI shows a form.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from dmn import storage
from dmn.apps.babi import BabiRunConfig
from dmn.operations_config import EvaluateConfig, PromotionConfig, RollbackConfig
from dmn.promotion import Decision, apply_promotion
from dmn.promotion import rollback as roll_back
from dmn.reevaluate import evaluate_registered
from dmn.report import report_markdown
from flows.babi import babi_flow
from tasks.steps import is_transient


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


def _publish(decision: Decision, model_name: str) -> None:
    create_markdown_artifact(
        key=f"{model_name}-decision",
        markdown=(
            f"**{decision.action}** {model_name} version {decision.version}: {decision.reason}\n\n"
            f"champion: {decision.champion_before} -> {decision.champion_after} ({decision.at})"
        ),
        description="promotion decision",
    )
    get_run_logger().info("%s version %s: %s", decision.action, decision.version, decision.reason)


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=is_transient)
def promote_version(config: PromotionConfig) -> Decision:
    """Gate the version and move `champion` if it passes (all or nothing); record the decision."""
    decision = apply_promotion(config)
    _publish(decision, config.model_name)
    return decision


@flow(name="dmn-promote")
def promote_flow(config: PromotionConfig = PromotionConfig()) -> Decision:  # noqa: B008 (UI form defaults)
    """Promote a version (default: the challenger) to champion if it passes the gate."""
    return promote_version(config)


@flow(name="dmn-rollback")
def rollback_flow(config: RollbackConfig = RollbackConfig()) -> Decision:  # noqa: B008 (UI form defaults)
    """Move `champion` back to the version it replaced."""
    decision = roll_back(config.model_name, reason=config.reason, tracking_uri=config.tracking_uri)
    _publish(decision, config.model_name)
    return decision


@flow(name="dmn-retrain")
def retrain_flow(
    config: BabiRunConfig = BabiRunConfig(),  # noqa: B008 (UI form defaults)
    tolerance: float = 0.0,
) -> Decision | None:
    """Ingest -> tokenise -> train -> evaluate -> register (as challenger) -> promote if better."""
    outcome = babi_flow(config)
    version = outcome["version"]
    if version is None:  # a node other than 0: node 0 promotes
        return None
    promotion = PromotionConfig(
        model_name=config.model_name, version=version.version, tolerance=tolerance, tracking_uri=config.tracking_uri
    )
    return promote_version(promotion)
