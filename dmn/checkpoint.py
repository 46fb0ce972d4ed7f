"""Model checkpoints that describe themselves: application, unit, architecture and configuration, the unit's
encoding settings (a bAbI task's story cut, say), sizes, history, weights.

Written whole or not at all, to a local path or an object-storage URI (dmn/storage.py), and read with
`torch.load(weights_only=True)`. A checkpoint of the first format (DMN+ on bAbI only, before the model was
built from parts) still loads.
"""

from __future__ import annotations

from dataclasses import asdict

from dmn import storage
from dmn.config import ModelConfig
from dmn.errors import DataError
from dmn.models import DynamicMemoryNetwork, ModelSizes, build_model
from dmn.train import TrainResult

FORMAT = "dmn/2"
FIRST_FORMAT = "dmn-plus/1"  # DMN+ on bAbI; its answer layer was `answer`, now `answer.linear`


def save_checkpoint(
    path,
    result: TrainResult,
    model_config: ModelConfig,
    train_config,
    *,
    sizes: ModelSizes,
    application: str,
    unit,
    settings: dict,
    trained_words: list[str] | None = None,
) -> None:
    """`trained_words`: the words of the unit's training examples (the served model flags the others)."""
    payload = {
        "format": FORMAT,
        "application": application,
        "unit": unit,
        "settings": settings,
        "trained_words": trained_words,
        "architecture": model_config.architecture,
        "model_config": model_config.model_dump(),
        "train_config": train_config.model_dump(),
        "sizes": asdict(sizes),
        "best_epoch": result.best_epoch,
        "best_valid_loss": result.best_valid_loss,
        "best_valid_accuracy": result.best_valid_accuracy,
        "history": result.history,
        "seconds": result.seconds,
        "state_dict": result.state_dict,
    }
    storage.save_torch(payload, path)


def load_checkpoint(path, device="cpu") -> tuple[DynamicMemoryNetwork, dict]:
    """The model in eval mode, and the checkpoint's metadata."""
    try:
        payload = storage.load_torch(path, map_location=device)
    except Exception as error:  # a truncated or foreign file: say which
        raise DataError(path, f"not a readable checkpoint ({error})") from error
    if isinstance(payload, dict) and payload.get("format") == FIRST_FORMAT:
        payload = _from_first_format(payload)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(path, f"not a {FORMAT} checkpoint")
    model = build_model(ModelConfig(**payload["model_config"]), ModelSizes(**payload["sizes"]))
    model.load_state_dict(payload.pop("state_dict"))
    return model.to(device).eval(), payload


def _from_first_format(payload: dict) -> dict:
    train = payload["train_config"]
    limit = train.get("max_sentences_by_task", {}).get(payload["babi_task"], train.get("max_sentences", 70))
    weights = {
        ("answer.linear." + k[len("answer.") :] if k.startswith("answer.") else k): v
        for k, v in payload["state_dict"].items()
    }
    return {
        **payload,
        "format": FORMAT,
        "application": "babi",
        "unit": payload["babi_task"],
        "settings": {"sentence_limit": limit},
        "architecture": "dmn+",
        "sizes": {"vocab_size": payload["vocab_size"], "answer_size": payload["answer_size"]},
        "state_dict": weights,
    }
