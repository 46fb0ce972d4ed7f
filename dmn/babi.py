"""The bAbI application: train and evaluate one DMN+ per bAbI task on tokenised data.

Each function is usable without Prefect; `tasks/babi.py` wraps them as cached, retryable Prefect tasks.
"""

from __future__ import annotations

from pathlib import Path

from dmn import storage
from dmn.checkpoint import load_checkpoint, save_checkpoint
from dmn.config import ModelConfig, TrainConfig
from dmn.data.batching import encode_stories
from dmn.data.parquet import TokenisedBabi
from dmn.data.vocab import Vocabulary
from dmn.evaluate import evaluate
from dmn.train import resolve_device, split_validation, train_dmn, world
from dmn.version import code_digest, digest_of


def training_digest(data_digest: str, babi_tasks, model: ModelConfig, train: TrainConfig, seeds=None) -> str:
    """Identifies what a run trains: same data, tasks, configuration, seeds and model code -> same digest."""
    return digest_of(data_digest, sorted(babi_tasks), model, train, seeds or [train.seed], code_digest())


def best_checkpoint(paths: list[str]) -> str:
    """Of several restarts of one bAbI task, the checkpoint with the lowest validation loss."""
    return min(paths, key=lambda path: load_checkpoint(path)[1]["best_valid_loss"])


def train_babi_task(
    dataset: TokenisedBabi,
    babi_task: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    models_root: str | Path,
    progress: bool = False,
    on_epoch=None,
) -> str:
    """Train one DMN+ on one bAbI task; returns the checkpoint's location (an existing one is reused).

    `models_root` is a local folder or an object-storage URI (dmn/storage.py)."""
    key = training_digest(dataset.digest, [babi_task], model_config, train_config)
    folder = storage.join(models_root, f"babi-{dataset.size}-{key[:16]}")
    path = storage.join(folder, f"babi_task_{babi_task}.pt")
    if storage.exists(path):
        return path
    vocab = Vocabulary.load(dataset.vocab_path)
    limit = train_config.sentence_limit(babi_task)
    train_rows, valid_rows = split_validation(dataset.read(babi_task, "train"), train_config.valid_fraction)
    progress_path = storage.join(folder, f"babi_task_{babi_task}.progress.pt")  # resumes a killed run
    result = train_dmn(
        encode_stories(train_rows, vocab, limit),
        encode_stories(valid_rows, vocab, limit),
        model_config,
        train_config,
        len(vocab.words),
        len(vocab.answers),
        progress=progress,
        on_epoch=on_epoch,
        progress_path=progress_path,
    )
    if world()[0] != 0:
        return path
    save_checkpoint(
        path,
        result,
        model_config,
        train_config,
        vocab_size=len(vocab.words),
        answer_size=len(vocab.answers),
        babi_task=babi_task,
    )
    storage.delete(progress_path)
    return path


def evaluate_babi_task(dataset: TokenisedBabi, babi_task: int, checkpoint: str, device: str = "auto") -> dict:
    """Test-split metrics of one checkpoint, with its training summary and any data note.

    The device is this machine's ('auto': CUDA when present), not the one the model was trained on."""
    model, meta = load_checkpoint(checkpoint)
    device = resolve_device(device)
    model.to(device)
    vocab = Vocabulary.load(dataset.vocab_path)
    limit = TrainConfig(**meta["train_config"]).sentence_limit(babi_task)
    metrics = evaluate(model, encode_stories(dataset.read(babi_task, "test"), vocab, limit), device)
    return {
        "babi_task": babi_task,
        **metrics,
        "best_epoch": meta["best_epoch"],
        "epochs": len(meta["history"]),
        "train_seconds": meta["seconds"],
        "seed": meta["train_config"]["seed"],
        "note": dataset.fallbacks.get(babi_task, ""),
    }
