"""What an application is: the run configuration fields every application shares, and `Application`, the
functions and names in which applications differ. Everything else (training loop, evaluation, checkpoints,
reports, registry, promotion, serving, the Prefect tasks and flows, the CLI) is generic and takes one.

Adding an application (sentiment, tagging, visual QA...): a module in dmn/apps/ that defines its run
configuration (a `RunConfig` with its own fields) and an `APPLICATION = Application(...)`, its name in
`dmn.apps.APPLICATIONS`, a flow of a few lines in flows/, a deployment entry in prefect.yaml and a test file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dmn.config import DataRoot, DistributedConfig, ModelConfig, TrainConfig
from dmn.data.batching import Examples
from dmn.data.parquet import TokenisedData
from dmn.data.vocab import Vocabulary


class RunConfig(BaseModel):
    """The fields of one run that every application has; an application's config adds its own."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("bundled", description="Where the data comes from: 'bundled', a folder, a URL...")
    data_root: DataRoot = Field(
        "data",
        description="Where ingested data, Parquet and checkpoints are written: a folder or an object-storage URI "
        "(s3://bucket/prefix, gs://..., abfs://...).",
    )
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLflow's own default).")
    model_name: str = Field(description="Registered model name in MLflow (default: dmn-<application>).")
    model: ModelConfig = Field(ModelConfig(), description="The DMN: architecture, modules, sizes.")
    train: TrainConfig = Field(TrainConfig(), description="The training protocol of each model.")
    distributed: DistributedConfig = Field(
        DistributedConfig(),
        description="Data-parallel training through torch.distributed's elastic launcher (torchrun's options).",
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        description="Trainings (units x seeds x variants) run at the same time, each in a process of its own with "
        "its share of the CPU cores. None: one per core on a CPU (per core left to each training's ranks), one "
        "on a GPU or across nodes.",
    )
    seeds: list[int] | None = Field(
        None, description="Restarts with these seeds per unit; the best by train.select_by is kept."
    )

    reads_images: ClassVar[bool] = False  # True: the application's stories are images (visual QA)

    @model_validator(mode="after")
    def _input_fits(self) -> RunConfig:
        """Images take the visual input module ('auto' becomes it); text takes any other."""
        visual = self.model.input == "regions"
        if self.reads_images and self.model.input not in ("auto", "regions"):
            raise ValueError("model.input: this application reads images; use 'regions' or 'auto'")
        if visual and not self.reads_images:
            raise ValueError("model.input: 'regions' reads images; this application reads text")
        if self.reads_images:
            self.model = self.model.model_copy(update={"input": "regions"})
        return self


def only_answer(model: ModelConfig, kind: str, why: str) -> ModelConfig:
    """`model` with the answer module `kind`, the only one an application's answers fit ('auto' becomes it);
    ValueError naming model.answer for another (`why` says what the answers are)."""
    if model.answer not in ("auto", kind):
        raise ValueError(f"model.answer: {why}; use '{kind}' or 'auto'")
    return model.model_copy(update={"answer": kind})


@dataclass(frozen=True)
class Column:
    """An input column of the application's pyfunc."""

    name: str
    kind: str = "string"  # "string", "strings" (a list of strings per row), or "image" (dmn/data/images.py)
    required: bool = True  # False: one of several alternatives (SST: `sentence` or `tokens`)


@dataclass(frozen=True)
class Application:
    """An application of the DMN: a frozen set of functions, no class hierarchy.

    A *unit* is what is trained separately (a bAbI task; SST fine or binary...); its *settings* are the
    encoding choices of that unit (a bAbI task's story cut), recorded in its checkpoint so that evaluation
    and serving encode as training did.
    """

    name: str  # "babi": the CLI's `dmn run babi`, the flow's and the default registered model's names
    module: str  # its module: the code its ingest and tokenise steps key on
    unit_name: str  # "babi_task": Parquet partitions, metrics, artifacts and the pyfunc's unit column
    unit_title: str  # "bAbI task", in reports
    unit_type: type  # int (bAbI tasks) or str: how the pyfunc's unit column is typed and read
    config_type: type[RunConfig]
    unit_field: str  # the field of its run config that lists the units to train ("babi_tasks")
    describe: Callable[[RunConfig], str]  # the data set in words ("bAbI en 1k")
    source_fingerprint: Callable[[RunConfig], str | None]  # the source's content, None when unknown before fetching
    ingest: Callable[[RunConfig, str], Any]  # (config, data root) -> raw files with .digest and .is_stored()
    tokenise: Callable[[Any, str], TokenisedData]  # (raw, data root) -> Parquet, vocabulary, manifest
    settings: Callable[[RunConfig, Any], dict]  # (config, unit) -> encoding settings of that unit
    encode: Callable[[list[dict], Vocabulary, dict, str], Examples]  # (rows, vocab, settings, answer kind)
    render_answer: Callable[[list[int], Vocabulary, str], Any]  # (answer ids, vocab, kind) -> the answer (`output`)
    # (a request row (its columns present), the unit's serving settings) -> a token row (ConfigError if bad)
    parse_request: Callable[[dict, dict], dict]
    request_columns: tuple[Column, ...]  # the pyfunc's input columns, besides the unit's
    output: Column  # what the pyfunc answers per row (bAbI: an answer string; tagging: a list of tags)
    example_request: Callable[[dict], dict]  # a tokenised test row -> a request row (the pyfunc's input example)
    ask_hint: str  # the options of a `dmn ask` example, printed after a run ('--sentence "A fine film."')
    anchors: Callable[[RunConfig], list[str]]  # published results to read the report against
    per_class: bool  # report per-class precision and recall and the confusions (sentiment labels, tags)
    pass_error: float | None  # a unit passes at this test error or below (bAbI: 0.05); None: no such convention
    first_max_error: float  # a first champion's mean test error is at most this (Gate.first_max_error's default)
    audit_view: Callable[[dict], tuple[list[str], str, str]]  # a test row -> (its facts, question, answer) as text
    # a unit's settings -> those of served requests (bAbI: no story cut, a request's story is read whole)
    serving_settings: Callable[[dict], dict] = dict
    # its ingest checks that the source holds the units asked for (bAbI's tasks): they join ingest's cache key
    ingest_checks_units: bool = False
    # (training rows, settings, seed) -> the rows and lengthened copies (TrainConfig.lengthen_stories); None: no
    lengthen: Callable[[list[dict], dict, int], list[dict]] | None = None
    # (training rows, settings, seed) -> the rows the model trains on: they and label-preserving changed copies
    # (visual QA: turned, mirrored and recoloured images), as the settings ask
    augment: Callable[[list[dict], dict, int], list[dict]] | None = None
    # a test row -> its question type (visual QA: the layout's first word): the report's accuracy per type
    question_type: Callable[[dict], str] | None = None
    # (test rows, their rendered answers) -> extra test metrics (visual QA: VQA's accuracy against ten humans)
    score: Callable[[list[dict], list], dict] | None = None
    # a test row -> its image (H, W, C) uint8: the audit page draws the attention over its regions
    audit_image: Callable[[dict], Any] | None = None
    # (config, unit, tokenised data) -> the settings to train the unit with, one model each, the best on
    # validation kept (bAbI 1k: with and without renamed copies); None: the one of `settings`
    variants: Callable[[RunConfig, Any, TokenisedData], list[dict]] | None = None
    # a variant's settings -> how the report and the task runs name it ("" for the plain one)
    variant_name: Callable[[dict], str] | None = None
    # (config, units, tokenised data) -> {unit: settings} of one model trained on all the units together, a
    # candidate for each beside its own models (bAbI's `joint`); None: no such model
    joint_variant: Callable[[RunConfig, list, TokenisedData], dict | None] | None = None

    def __reduce__(self):
        """Pickled as its name (spawned training workers look it up again), so its functions need not pickle.

        The registry is looked up by module name, not imported: the code digests (dmn/version.py) read imports,
        and adding an application to dmn/apps/__init__.py must not change those of the others."""
        return importlib.import_module("dmn.apps").application, (self.name,)

    def setting_variants(self, config: RunConfig, unit, dataset: TokenisedData) -> list[dict]:
        """The settings each unit is trained with (several: a model each, the best on validation kept)."""
        return self.variants(config, unit, dataset) if self.variants is not None else [self.settings(config, unit)]

    def joint_settings(self, config: RunConfig, units: list, dataset: TokenisedData) -> dict | None:
        """{unit: settings} of the one model `config` asks to train on all its units together, or None."""
        return self.joint_variant(config, units, dataset) if self.joint_variant is not None else None

    def variant_title(self, settings: dict) -> str:
        """How the report and the task runs name the variant trained with `settings` ("" for the plain one)."""
        return self.variant_name(settings) if self.variant_name is not None else ""

    def units(self, config: RunConfig) -> list:
        """The units `config` asks to train."""
        return list(getattr(config, self.unit_field))
