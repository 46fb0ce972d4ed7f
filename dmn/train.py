"""Training of one DMN+ on one bAbI task, as the paper: Adam, L2 on non-bias weights, early stopping on the
validation loss, and selection of the epoch with the lowest validation loss."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dmn.config import ModelConfig, TrainConfig
from dmn.data.batching import EncodedStories, make_batch
from dmn.errors import ConfigError
from dmn.model import DMNPlus


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]  # a copy of the best epoch's weights, not the live ones
    best_epoch: int
    best_valid_loss: float
    history: list[dict] = field(default_factory=list)  # one dict of metrics per epoch
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; an unavailable device is a ConfigError naming --device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"--device: {name!r} is not a device ('auto', 'cpu', 'cuda', 'cuda:N')") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device: {name!r} asked for, but CUDA is not available here")
    return device


def split_validation(rows: list, fraction: float) -> tuple[list, list]:
    """The last `fraction` of the training file is the validation set (the paper's protocol)."""
    n_valid = max(1, round(len(rows) * fraction))
    return rows[:-n_valid], rows[-n_valid:]


def optimizer_for(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam; L2 on every non-bias weight (Adam's weight_decay adds l2 * w to the gradient of that weight)."""
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
    groups = [{"params": decay, "weight_decay": config.l2}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel for all parameters (CPU and CUDA); per-tensor updates cost ~10 % of a step on CPU
    return torch.optim.Adam(groups, lr=config.learning_rate, fused=True)


def run_epoch(model, data: EncodedStories, batch_size: int, device, optimizer=None, generator=None) -> dict:
    """One pass over `data`; trains when `optimizer` is given. Returns the mean loss and the accuracy."""
    training = optimizer is not None
    model.train(training)
    order = torch.randperm(len(data), generator=generator) if training else torch.arange(len(data))
    total_loss, correct = 0.0, 0
    with torch.set_grad_enabled(training):
        for start in range(0, len(data), batch_size):  # the last partial batch is kept
            batch = make_batch(data.select(order[start : start + batch_size]), device)
            logits, _ = model(*batch.model_inputs())  # (B, A)
            loss = F.cross_entropy(logits, batch.answer)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * batch.answer.size(0)
            correct += int((logits.argmax(-1) == batch.answer).sum())
    return {"loss": total_loss / len(data), "accuracy": correct / len(data)}


def train_dmn(
    train: EncodedStories,
    valid: EncodedStories,
    model_config: ModelConfig,
    train_config: TrainConfig,
    vocab_size: int,
    answer_size: int,
    progress: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train until the validation loss has not improved for `patience` epochs; keep the best weights."""
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)
    generator = torch.Generator().manual_seed(train_config.seed)
    model = DMNPlus(model_config, vocab_size, answer_size).to(device)
    optimizer = optimizer_for(model, train_config)
    best: TrainResult | None = None
    history: list[dict] = []
    started = time.perf_counter()
    epochs = tqdm(range(1, train_config.max_epochs + 1), desc="epochs", unit="ep", disable=not progress, leave=False)
    for epoch in epochs:
        train_metrics = run_epoch(model, train, train_config.batch_size, device, optimizer, generator)
        valid_metrics = run_epoch(model, valid, train_config.batch_size, device)
        record = {
            "epoch": epoch,
            "train_loss": train_metrics["loss"],
            "train_accuracy": train_metrics["accuracy"],
            "valid_loss": valid_metrics["loss"],
            "valid_accuracy": valid_metrics["accuracy"],
        }
        history.append(record)
        if best is None or record["valid_loss"] < best.best_valid_loss:
            best = TrainResult(copy.deepcopy(model.state_dict()), epoch, record["valid_loss"])
        epochs.set_postfix(valid_loss=f"{record['valid_loss']:.3f}", valid_acc=f"{record['valid_accuracy']:.3f}")
        if on_epoch is not None:
            on_epoch(record)
        if epoch - best.best_epoch >= train_config.patience:
            break
    best.history = history
    best.seconds = time.perf_counter() - started
    best.state_dict = {k: v.cpu() for k, v in best.state_dict.items()}
    return best
