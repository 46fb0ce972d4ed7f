"""Typed configuration of the operations on registered models (promote, roll back, evaluate), shared by the
CLI, the Prefect flows and the deployments. Apart from dmn/config.py, whose fields key the training caches:
editing a promotion default must not retrain anything."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from dmn.config import DataRoot


class Gate(BaseModel):
    """What a version must clear to become champion: against the champion, or, when there is none yet, an
    absolute bar (the same rule for `dmn run`, the retrain deployment and `dmn promote`)."""

    tolerance: float = Field(
        0.0, ge=0, le=1, description="Accuracy a unit (a bAbI task...) may lose against the champion (0 to 1)."
    )
    first_max_error: float | None = Field(
        None,
        ge=0,
        le=1,
        description="A first champion (none yet) has at most this mean test error over its units (0 to 1; 1: "
        "no bar); empty: the application's (bAbI 0.5, sentiment 0.6, tagging 0.1).",
    )
    first_max_failed: int | None = Field(
        None,
        ge=0,
        description="A first champion fails at most this many units (bAbI: tasks above 5 % error); empty: any.",
    )


class PromotionConfig(Gate):
    """How a version is promoted to `champion`."""

    model_name: str = Field("dmn-babi", description="Registered model name.")
    version: str | None = Field(None, description="Version to promote (default: the challenger).")
    force: bool = Field(False, description="Promote without the gate (needs a reason).")
    reason: str | None = Field(None, description="Why; recorded with the decision.")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLflow's own default).")


class RollbackConfig(BaseModel):
    """Which registered model's champion moves back."""

    model_name: str = Field("dmn-babi", description="Registered model name.")
    reason: str = Field("rollback", description="Why; recorded with the decision.")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI.")


class EvaluateConfig(BaseModel):
    """Which registered version to evaluate, on which data."""

    model_uri: str = Field("models:/dmn-babi@champion", description="models:/NAME/VERSION or models:/NAME@ALIAS.")
    source: str = Field("bundled", description="Dataset: 'bundled', a folder, a tarball path or URL, or hf:NAME.")
    size: Literal["1k", "10k"] = Field("1k", description="Dataset size.")
    data_root: DataRoot = Field(
        "data", description="Where ingested data are written: a folder or an object-storage URI."
    )
    tracking_uri: str | None = Field(None, description="MLflow tracking URI.")
