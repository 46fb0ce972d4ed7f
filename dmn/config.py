"""Typed configuration shared by the CLI, the Prefect flows, the deployments and the checkpoints.

Defaults follow Xiong, Merity & Socher 2016 (DMN+) for bAbI; a field whose value is not obvious says why.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from dmn.storage import check_location

BABI_TASK_IDS = tuple(range(1, 21))
DataRoot = Annotated[str, AfterValidator(check_location)]  # a local folder or an object-storage URI


class ModelConfig(BaseModel):
    """Sizes of the DMN+ modules (vocabulary sizes come from the data, not from here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_size: int = Field(80, ge=1, description="Embedding and hidden size (the paper uses 80 for both).")
    passes: int = Field(3, ge=1, description="Episodic memory passes.")
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Dropout on sentence encodings and answer input (paper: keep 0.9)."
    )


class TrainConfig(BaseModel):
    """The training protocol of one model on one bAbI task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(128, ge=1, description="Examples per step (paper: 128; the public code uses 100).")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate.")
    l2: float = Field(
        1e-3, ge=0, description="L2 coefficient on non-bias weights (the paper gives none; 1e-3 as the public TF code)."
    )
    max_epochs: int = Field(256, ge=1, description="Upper bound on epochs.")
    patience: int = Field(20, ge=1, description="Stop after this many epochs without a lower validation loss.")
    valid_fraction: float = Field(
        0.1, gt=0, lt=1, description="Last share of the training file held out for validation."
    )
    max_sentences: int = Field(70, ge=1, description="Stories are cut to their last N sentences.")
    max_sentences_by_task: dict[int, int] = Field(
        default_factory=lambda: {3: 130},
        description="Per-bAbI-task override of max_sentences (task 3 needs 130, as the paper).",
    )
    seed: int = Field(0, description="Seed of initialisation, dropout and shuffling.")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'.")

    def sentence_limit(self, babi_task: int) -> int:
        return self.max_sentences_by_task.get(babi_task, self.max_sentences)


class DistributedConfig(BaseModel):
    """How the train step runs: torchrun's options, passed to torch.distributed's elastic launcher."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nproc_per_node: int = Field(1, ge=1, description="Training processes per node (one per GPU on CUDA).")
    nnodes: int = Field(1, ge=1, description="Nodes (machines) taking part.")
    node_rank: int = Field(0, ge=0, description="This node's rank; node 0 hosts the rendezvous.")
    rdzv_endpoint: str = Field(
        "127.0.0.1:29500", description="host:port of the rendezvous on node 0 (single node: a free port is taken)."
    )
    rdzv_id: str = Field("dmn", description="Job id shared by the nodes of one run.")
    rdzv_timeout: int = Field(300, ge=1, description="Seconds to wait for all nodes to join.")
    max_restarts: int = Field(0, ge=0, description="Restarts of failed workers (they resume from the checkpoint).")

    @property
    def distributed(self) -> bool:
        return self.nproc_per_node * self.nnodes > 1


class BabiRunConfig(BaseModel):
    """Everything one `dmn run babi` needs; also the parameters of the Prefect flow."""

    model_config = ConfigDict(extra="forbid")

    babi_tasks: list[int] = Field(default_factory=lambda: [1], description="bAbI task ids 1-20 to train.")
    size: Literal["1k", "10k"] = Field("1k", description="Training set size.")
    source: str = Field(
        "bundled",
        description="'bundled', a folder of bAbI files, a tasks_1-20_v1-2.tar.gz path or URL, or hf:NAME.",
    )
    source_sha256: str | None = Field(None, description="Expected sha256 of a tarball source.")
    data_root: DataRoot = Field(
        "data",
        description="Where ingested data, Parquet and checkpoints are written: a folder or an object-storage URI "
        "(s3://bucket/prefix, gs://..., abfs://...).",
    )
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLflow's own default).")
    model_name: str = Field("dmn-babi", description="Registered model name in MLflow.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    concurrency: int = Field(1, ge=1, description="bAbI tasks (or seeds) trained at the same time.")
    seeds: list[int] | None = Field(
        None, description="Restarts with these seeds per bAbI task; the lowest validation loss is kept."
    )

    @field_validator("babi_tasks")
    @classmethod
    def _known_tasks(cls, value: list[int]) -> list[int]:
        unknown = [t for t in value if t not in BABI_TASK_IDS]
        if unknown:
            raise ValueError(f"unknown bAbI task id(s) {unknown}; valid ids are 1-20")
        if not value:
            raise ValueError("at least one bAbI task id is needed")
        return sorted(set(value))


class PromotionConfig(BaseModel):
    """How a version is promoted to `champion`."""

    model_name: str = Field("dmn-babi", description="Registered model name.")
    version: str | None = Field(None, description="Version to promote (default: the challenger).")
    tolerance: float = Field(0.0, ge=0, le=1, description="Accuracy a bAbI task may lose against the champion.")
    force: bool = Field(False, description="Promote without the gate (needs a reason).")
    reason: str | None = Field(None, description="Why; recorded with the decision.")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLflow's own default).")


class RollbackConfig(BaseModel):
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


def parse_babi_tasks(text: str) -> list[int]:
    """'1,2,3' or 'all' -> [1, 2, 3]; raises ValueError naming the bad item."""
    if text.strip().lower() == "all":
        return list(BABI_TASK_IDS)
    ids = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) not in BABI_TASK_IDS:
            raise ValueError(f"--babi-tasks: unknown bAbI task id {item!r}; valid ids are 1-20 or 'all'")
        ids.append(int(item))
    return sorted(set(ids))
