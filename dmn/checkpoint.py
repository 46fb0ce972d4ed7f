"""Model checkpoints that describe themselves: config, vocabulary sizes, bAbI task, history, weights.

Written whole or not at all, to a local path or an object-storage URI (dmn/storage.py), and read with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

from dmn import storage
from dmn.config import ModelConfig, TrainConfig
from dmn.errors import DataError
from dmn.model import DMNPlus
from dmn.train import TrainResult

FORMAT = "dmn-plus/1"


def save_checkpoint(
    path,
    result: TrainResult,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    vocab_size: int,
    answer_size: int,
    babi_task: int,
) -> None:
    payload = {
        "format": FORMAT,
        "babi_task": babi_task,
        "model_config": model_config.model_dump(),
        "train_config": train_config.model_dump(),
        "vocab_size": vocab_size,
        "answer_size": answer_size,
        "best_epoch": result.best_epoch,
        "best_valid_loss": result.best_valid_loss,
        "history": result.history,
        "seconds": result.seconds,
        "state_dict": result.state_dict,
    }
    storage.save_torch(payload, path)


def load_checkpoint(path, device="cpu") -> tuple[DMNPlus, dict]:
    """The model in eval mode, and the checkpoint's metadata."""
    try:
        payload = storage.load_torch(path, map_location=device)
    except Exception as error:  # a truncated or foreign file: say which
        raise DataError(path, f"not a readable checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(path, f"not a {FORMAT} checkpoint")
    model = DMNPlus(ModelConfig(**payload["model_config"]), payload["vocab_size"], payload["answer_size"])
    model.load_state_dict(payload.pop("state_dict"))
    return model.to(device).eval(), payload
