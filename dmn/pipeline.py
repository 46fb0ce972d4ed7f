"""The steps of a run that touch the model, for any application, without Prefect: train one unit (a bAbI
task, say) into a checkpoint, pick the best of its restarts, evaluate it on the test split.

`tasks/` wraps them as cached, retryable Prefect tasks; their cache keys cover the code they run
(`step_code`), which is this module's and what it imports: the model, the training loop, checkpoints and
evaluation, plus the application's module (reader and encoding).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from dmn import storage
from dmn.apps.base import Application
from dmn.checkpoint import load_checkpoint, save_checkpoint
from dmn.config import ModelConfig, TrainConfig
from dmn.data.batching import Examples, concat_examples
from dmn.data.parquet import TokenisedData
from dmn.data.vectors import glove_vectors
from dmn.data.vocab import UNKNOWN_WORD, Vocabulary
from dmn.errors import ConfigError
from dmn.evaluate import evaluate
from dmn.models import ModelSizes, build_model
from dmn.train import TrainResult, resolve_device, run_epoch, selection_key, split_validation, train_dmn, world
from dmn.version import code_digest, digest_of


def step_code(app: Application, step: str) -> str:
    """Digest of the code a step runs: the application's module for ingest and tokenise; that and this
    module (model, training loop, checkpoints, evaluation) for train and evaluate."""
    return code_digest(app.module) if step in ("ingest", "tokenise") else code_digest(app.module, __name__)


def training_digest(
    app: Application, data_digest: str, units, settings: dict, model: ModelConfig, train: TrainConfig, seeds=None
) -> str:
    """Identifies what a run trains: same data, units, settings (one unit's, or every unit's variants),
    configuration, seeds and code -> same digest."""
    return digest_of(
        app.name, data_digest, sorted(units), settings, model, train, seeds or [train.seed], step_code(app, "train")
    )


def best_checkpoint(paths: list[str], select_by: str) -> str:
    """Of several models of one unit (restarts, settings variants), the best by the rule that chose their
    epochs (`select_by`)."""

    def key(path: str) -> tuple[float, float]:
        meta = load_checkpoint(path)[1]  # a joint model's figures are its unit's (train_joint)
        return selection_key(select_by, meta["best_valid_loss"], meta["best_valid_accuracy"])

    return min(paths, key=key)


def train_unit(
    app: Application,
    dataset: TokenisedData,
    unit,
    settings: dict,
    model_config: ModelConfig,
    train_config: TrainConfig,
    models_root: str | Path,
    progress: bool = False,
    on_epoch=None,
) -> str:
    """Train one DMN on one unit; returns the checkpoint's location (an existing one is reused).

    `models_root` is a local folder or an object-storage URI (dmn/storage.py)."""
    key = training_digest(app, dataset.digest, [unit], settings, model_config, train_config)
    folder = storage.join(models_root, f"{app.name}-{key[:16]}")
    path = storage.join(folder, f"{app.unit_name}_{unit}.pt")
    if storage.exists(path):
        return path
    vocab = dataset.vocabulary()
    train_data, valid_data = _unit_examples(app, dataset, unit, settings, model_config, train_config)
    progress_path = storage.join(folder, f"{app.unit_name}_{unit}.progress.pt")  # resumes a killed run
    result = _fit(train_data, valid_data, vocab, model_config, train_config, progress_path, progress, on_epoch)
    if world()[0] != 0:
        return path
    _save(path, result, app, vocab, model_config, train_config, unit, settings, trained_words(train_data, vocab))
    storage.delete(progress_path)
    return path


def train_joint(
    app: Application,
    dataset: TokenisedData,
    units: list,
    settings: dict,
    model_config: ModelConfig,
    train_config: TrainConfig,
    models_root: str | Path,
    progress: bool = False,
    on_epoch=None,
) -> dict:
    """Train one DMN on several units at once (bAbI: a run's tasks in one model, the joint training of Weston et
    al. 2015 and Sukhbaatar et al. 2015; the vocabulary and the answers are the run's, shared by its units), each
    unit's examples encoded with its own `settings[unit]`; the validation examples of all of them choose the epoch.

    Returns {unit: checkpoint}: the one model saved once per unit, with that unit's settings and its validation
    loss and accuracy on that unit alone, so that `best_checkpoint` weighs it against the unit's own models on the
    unit's figures. A unit whose settings ask for its `own_epoch` keeps the weights of the epoch best on its own
    validation examples instead of the epoch best on all of them. Existing checkpoints are reused."""
    key = training_digest(app, dataset.digest, units, settings, model_config, train_config)
    folder = storage.join(models_root, f"{app.name}-joint-{key[:16]}")
    paths = {unit: storage.join(folder, f"{app.unit_name}_{unit}.pt") for unit in units}
    if all(storage.exists(path) for path in paths.values()):
        return paths
    vocab = dataset.vocabulary()
    examples = {u: _unit_examples(app, dataset, u, settings[u], model_config, train_config) for u in units}
    train_data = concat_examples([train for train, _ in examples.values()])
    valid_data = concat_examples([valid for _, valid in examples.values()])
    progress_path = storage.join(folder, "joint.progress.pt")  # resumes a killed run
    own = [unit for unit in units if settings[unit].get("own_epoch")]  # units keeping their own best epoch
    parts = {unit: examples[unit][1] for unit in own}
    result = _fit(train_data, valid_data, vocab, model_config, train_config, progress_path, progress, on_epoch, parts)
    if world()[0] != 0:
        return paths
    model = build_model(model_config, _sizes(vocab, model_config))
    model.load_state_dict(result.state_dict)
    words = trained_words(train_data, vocab)
    for unit, (_, valid) in examples.items():
        if unit in parts:  # the epoch best on this unit's validation alone, its weights and figures
            unit_result = replace(result.part_best[unit], history=result.history, seconds=result.seconds)
        else:  # the epoch best on all the units' validation, with its figures on this unit alone
            figures = run_epoch(model, valid, train_config.batch_size, "cpu")
            unit_result = replace(result, best_valid_loss=figures["loss"], best_valid_accuracy=figures["accuracy"])
        _save(paths[unit], unit_result, app, vocab, model_config, train_config, unit, settings[unit], words)
    storage.delete(progress_path)
    return paths


def _sizes(vocab: Vocabulary, model_config: ModelConfig) -> ModelSizes:
    return ModelSizes(len(vocab.words), vocab.answer_size(model_config.answer_kind))


def _fit(
    train_data, valid_data, vocab, model_config, train_config, progress_path, progress, on_epoch, valid_parts=None
) -> TrainResult:
    """train_dmn on the run's vocabulary (GloVe vectors where the model asks for them)."""
    vectors = glove_vectors(vocab.words) if model_config.word_vectors == "glove-6b-50d" else None
    return train_dmn(
        train_data,
        valid_data,
        model_config,
        train_config,
        _sizes(vocab, model_config),
        progress=progress,
        on_epoch=on_epoch,
        progress_path=progress_path,
        word_vectors=vectors,
        valid_parts=valid_parts,
    )


def _save(path, result, app, vocab, model_config, train_config, unit, settings, words) -> None:
    save_checkpoint(
        path,
        result,
        model_config,
        train_config,
        sizes=_sizes(vocab, model_config),
        application=app.name,
        unit=unit,
        settings=settings,
        trained_words=words,
    )


def _unit_examples(
    app: Application, dataset: TokenisedData, unit, settings: dict, model_config: ModelConfig, train_config: TrainConfig
) -> tuple[Examples, Examples]:
    """A unit's training examples (lengthened and augmented as `train_config` and `settings` ask) and its
    validation examples: the published dev split, or the paper's cut of the training file where there is none."""
    vocab = dataset.vocabulary()
    kind = model_config.answer_kind
    train_rows, valid_rows = dataset.read(unit, "train"), dataset.read(unit, "dev")
    if not valid_rows:  # no published validation split (bAbI): the paper's cut of the training file
        train_rows, valid_rows = split_validation(train_rows, train_config.valid_fraction)
    if train_config.lengthen_stories:
        if app.lengthen is None:
            raise ConfigError(f"train.lengthen_stories: {app.name} has no stories to lengthen (bAbI has)")
        train_rows = app.lengthen(train_rows, settings, train_config.seed)
    if app.augment is not None:
        train_rows = app.augment(train_rows, settings, train_config.seed)
    return app.encode(train_rows, vocab, settings, kind), app.encode(valid_rows, vocab, settings, kind)


def trained_words(data: Examples, vocab: Vocabulary) -> list[str]:
    """The words a model's training examples hold (its stories and questions; with images, its questions): the
    served model flags the others, since the vocabulary is shared by every unit of a run and one model may never
    have seen a word that another did."""
    stories = data.question.new_zeros(0) if data.is_images else data.story.unique()  # pixels are not words
    ids = torch.cat([stories, data.question.unique()]).unique().tolist()
    return sorted(vocab.words[i] for i in ids if i > UNKNOWN_WORD)


def evaluate_unit(
    app: Application,
    dataset: TokenisedData,
    unit,
    checkpoint: str,
    device: str = "auto",
    vocab: Vocabulary | None = None,
) -> dict:
    """Test-split metrics of one checkpoint, with its training summary and any data note.

    `vocab` is the one the model was trained with (default: the dataset's own, as in the run that trained it);
    a registered version evaluated on another dataset reads that dataset's words through its own vocabulary,
    the words missing from it as the unknown word and answers it cannot give as wrong. The device is this
    machine's ('auto': CUDA when present), not the one the model was trained on."""
    model, meta = load_checkpoint(checkpoint)
    device = resolve_device(device)
    model.to(device)
    kind = ModelConfig(**meta["model_config"]).answer_kind
    vocab = vocab or dataset.vocabulary()
    rows = dataset.read(unit, "test")
    data = app.encode(rows, vocab, meta["settings"], kind)
    per_token = kind == "tags"  # a tagger is scored per word
    dev = {}
    dev_rows = dataset.read(unit, "dev")  # a published validation split is reported too (SST)
    if dev_rows:
        dev_data = app.encode(dev_rows, vocab, meta["settings"], kind)
        dev["dev_accuracy"] = evaluate(model, dev_data, device, per_token=per_token)["accuracy"]
    classes = len(vocab.answers) if app.per_class else None
    groups = [app.question_type(row) for row in rows] if app.question_type else None

    def score(answers):  # (N, T) answer ids -> the application's own test metrics
        return app.score(rows, [app.render_answer(ids.tolist(), vocab, kind) for ids in answers])

    scored = score if app.score is not None else None
    metrics = evaluate(model, data, device, per_token=per_token, classes=classes, groups=groups, score=scored)
    if app.per_class:
        metrics["classes"] = list(vocab.answers)
    return {
        "unit": unit,
        **metrics,
        "failed": None if app.pass_error is None else metrics["error"] > app.pass_error,
        **dev,
        "best_epoch": meta["best_epoch"],
        "epochs": len(meta["history"]),
        "train_seconds": meta["seconds"],
        "seed": meta["train_config"]["seed"],
        "settings": meta["settings"],
        "variant": app.variant_title(meta["settings"]),
        "note": dataset.notes.get(unit, ""),
    }
