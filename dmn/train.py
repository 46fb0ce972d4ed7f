"""Training of one DMN (either architecture) on one unit, as the DMN+ paper: Adam, L2 on non-bias weights,
early stopping on the validation loss, and selection of the epoch with the lowest validation loss (or, with
`select_by="valid_accuracy"`, the highest validation accuracy). With `ema_decay`, the weights validated and kept
are an exponential moving average of the trained ones (Polyak averaging), not the trained ones. The loss
is the cross-entropy of the answer (one class, or every word of a sequence with teacher forcing), plus, with
`supervise_gates`, the cross-entropy of each pass's gates against that pass's supporting fact (Kumar 2016).

Data-parallel when a process group is initialised (dmn/distributed.py launches it): `batch_size` is the
global batch, split evenly over the ranks by a DistributedSampler, and DistributedDataParallel averages the
gradients, so a step sees the same examples and takes the same update as one process with that batch. The
learning rate is therefore not scaled with the world size. Every rank validates on the whole validation set
(identical weights give identical decisions); rank 0 alone writes the progress checkpoint.

Resumable: with `progress_path`, the state after every epoch (weights, optimiser, moving average, epoch,
early-stopping state and the RNG state of every rank) is written atomically, and a new call resumes from it; the
sampler's order depends only on the seed and the epoch, so a resumed run ends as an uninterrupted one.

Stoppable: a `stopping_on_interrupt()` block left by an exception (Ctrl-C, SIGTERM) stops the trainings started
in it in other threads (those running in a copy of its context, as Prefect's thread runner's do) at their next
batch (`TrainingStopped`), keeping their last epoch's progress checkpoint; a thread cannot be interrupted
otherwise, and waiting for it would let an interrupted run train on to its end.
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from dmn import storage
from dmn.config import DistributedConfig, ModelConfig, TrainConfig
from dmn.data.batching import IGNORE, Batch, Examples, make_batch
from dmn.errors import ConfigError, DataError
from dmn.models import ModelOutput, ModelSizes, build_model

PROGRESS_FORMAT = "dmn-progress/5"

# the stop of the trainings started inside a stopping_on_interrupt block: a thread started there (Prefect's thread
# runner copies the submitting context) reads it before every batch; outside such a block there is none
_stop_event: ContextVar[threading.Event | None] = ContextVar("dmn_stop", default=None)


class TrainingStopped(Exception):
    """A training stopped by an interrupt of the thread that started it (see stopping_on_interrupt)."""


@contextmanager
def stopping_on_interrupt() -> Iterator[None]:
    """Run the block; if it is left by an exception (KeyboardInterrupt, Prefect's TerminationSignal, an error),
    first stop the trainings started inside it, in threads whose context is a copy of the block's, at their
    next batch, then re-raise. Trainings started after the block run normally."""
    stop = threading.Event()
    token = _stop_event.set(stop)
    try:
        yield
    except BaseException:
        stop.set()
        raise
    finally:
        _stop_event.reset(token)


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]  # a copy of the best epoch's weights, not the live ones
    best_epoch: int
    best_valid_loss: float
    best_valid_accuracy: float
    history: list[dict] = field(default_factory=list)  # one dict of metrics per epoch
    seconds: float = 0.0
    # of a joint model (train_dmn's `valid_parts`): {part: the best epoch on that part's validation alone}
    part_best: dict = field(default_factory=dict)


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


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity: a container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def share_cores(processes: int) -> None:
    """Give this process its share of the machine's cores when `processes` train at once (data-parallel ranks,
    or concurrent trainings): as torchrun's OMP_NUM_THREADS=1, without starving a big machine; never more
    threads than it has (OMP_NUM_THREADS)."""
    torch.set_num_threads(max(1, min(torch.get_num_threads(), available_cores() // processes)))


def concurrent_trainings(requested: int | None, trainings: int, device: str, distributed: DistributedConfig) -> int:
    """How many trainings run at once: `requested`, never more than there are `trainings`. By default (None), on
    a CPU, one per core its ranks leave (a DMN's operations are small: two trainings of one thread each do
    nearly twice what one training of two threads does); one on a GPU and across nodes. ConfigError for several
    across nodes: the nodes meet at one rendezvous endpoint per run."""
    if requested is None:
        cpu = resolve_device(device).type == "cpu" and distributed.nnodes == 1
        requested = max(1, available_cores() // distributed.nproc_per_node) if cpu else 1
    elif requested > 1 and distributed.nnodes > 1:
        raise ConfigError(f"--concurrency {requested}: with --nnodes > 1 the trainings run one at a time (1)")
    return max(1, min(requested, trainings))


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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


def moving_average(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, decay: float | None
) -> AveragedModel | None:
    """An exponential moving average of `model`'s weights after every step of `optimizer` (Polyak averaging,
    torch.optim.swa_utils): the first step copies w, the n-th (n >= 1 updates before it) takes
    w_avg <- d * w_avg + (1 - d) * w with d = min(decay, (1 + n) / (10 + n)), TensorFlow's
    ExponentialMovingAverage with num_updates: a run of few steps averages over few, not over its initial
    weights. None without a decay.

    Its `module` is a model of the same shape: the one validation scores and the checkpoint keeps."""
    if decay is None:
        return None

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        step_decay = min(decay, (1 + float(updates)) / (10 + float(updates)))
        for average_weight, weight in zip(averaged, current):
            average_weight.lerp_(weight, 1 - step_decay)

    average = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    optimizer.register_step_post_hook(lambda optimizer, args, kwargs: average.update_parameters(model))
    return average


def exact_match(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) bool: every scored position of `target` (N, T) predicted by `predicted` (N, T') ids.

    A sequence target ends with the end word, so a match is the whole answer and its end; a prediction
    shorter than the target is wrong."""
    if predicted.size(1) < target.size(1):
        missing = predicted.new_full((predicted.size(0), target.size(1) - predicted.size(1)), -2)  # never a class
        predicted = torch.cat([predicted, missing], dim=1)
    return ((predicted[:, : target.size(1)] == target) | (target == IGNORE)).all(-1)


def gate_loss(output: ModelOutput, supporting: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of pass k's gates against the k-th supporting fact, over the (example, pass) pairs that
    have one (Kumar 2016's supervision of the attention): a softmax over the story's facts of the gate scores.

    supporting (B, K), -1 = none. A categorical cross-entropy for the DMN's sigmoid gates too: a binary one per
    fact asks every gate for an absolute yes or no, which a fact read left to right cannot give where the
    answer is "the last time Mary moved" (bAbI task 2: 22 % against 39 % accuracy after 25 epochs)."""
    passes = min(output.gate_scores.size(1), supporting.size(1))
    wanted = supporting[:, :passes]  # (B, P')
    chosen = wanted >= 0  # (B, P')
    if not chosen.any():
        return output.gate_scores.new_zeros(())
    return F.cross_entropy(output.gate_scores[:, :passes][chosen], wanted[chosen])  # (N, S) against (N,)


def selection_key(select_by: str, valid_loss: float, valid_accuracy: float) -> tuple[float, float]:
    """Lower is better: the validation loss, or the validation accuracy with ties to the lower loss."""
    return (valid_loss, 0.0) if select_by == "valid_loss" else (-valid_accuracy, valid_loss)


def bucketed(order: list[int], lengths: torch.Tensor, batch_size: int, seed: int) -> list[int]:
    """`order` regrouped into batches of similar length: each window of 50 batches is sorted by length and cut
    into batches, and the batches are shuffled with `seed`. Every example stays, once; lengths (N,)."""
    window = 50 * batch_size
    length = lengths.tolist()  # a Python list: indexing the tensor once per example cost ~3 % of a task-1 epoch
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=length.__getitem__)
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    shuffle = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed)).tolist()
    return [i for b in shuffle for i in batches[b]]


def run_epoch(model, data: Examples, batch_size: int, device, optimizer=None, order=None, supervise_gates=False):
    """One pass over `data` in `order` (default: as stored); trains when `optimizer` is given.

    Returns the mean loss and the accuracy (exact match of the answer; a sequence is teacher-forced here),
    summed over the ranks when training data-parallel.
    """
    training = optimizer is not None
    model.train(training)
    order = torch.arange(len(data)) if order is None else torch.as_tensor(order)
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, examples
    stop = _stop_event.get()
    with torch.set_grad_enabled(training):
        for start in range(0, len(order), batch_size):  # the last partial batch is kept
            if stop is not None and stop.is_set():
                raise TrainingStopped("stopped: the block that started this training was left by an exception")
            batch: Batch = make_batch(data.select(order[start : start + batch_size]), device)
            output = model(*batch.model_inputs(), target=batch.target)  # logits (B, T, A)
            loss = F.cross_entropy(output.logits.flatten(0, 1), batch.target.flatten(), ignore_index=IGNORE)
            if supervise_gates:
                loss = loss + gate_loss(output, batch.supporting)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            n = batch.target.size(0)
            correct = float(exact_match(output.logits.argmax(-1), batch.target).sum())
            totals += torch.tensor([loss.item() * n, correct, n])
    if training and world()[1] > 1:
        reduced = totals.to(device)  # NCCL reduces device tensors, gloo CPU ones
        dist.all_reduce(reduced)
        totals = reduced.cpu()
    return {"loss": float(totals[0] / totals[2]), "accuracy": float(totals[1] / totals[2])}


def train_dmn(
    train: Examples,
    valid: Examples,
    model_config: ModelConfig,
    train_config: TrainConfig,
    sizes: ModelSizes,
    progress: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    progress_path: str | Path | None = None,
    word_vectors: tuple[torch.Tensor, torch.Tensor] | None = None,
    valid_parts: dict | None = None,
) -> TrainResult:
    """Train until no epoch has been better (`select_by`) for `patience` epochs, or until the validation accuracy
    reaches `target_valid_accuracy`; keep the best epoch's weights.

    `word_vectors`: (V, D) pre-trained vectors and a (V,) bool of the words they hold, copied into the first D
    dimensions of those words' embeddings before training.
    `valid_parts`: {part: Examples}, the validation examples of each unit a joint model learns (`valid` holds them
    all): every epoch also scores each part alone, and `part_best` keeps each part's best epoch and weights."""
    rank, world_size = world()
    if train_config.batch_size % world_size:
        raise ConfigError(f"--batch-size {train_config.batch_size} does not split over {world_size} processes")
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)  # the same initial weights on every rank
    model = build_model(model_config, sizes)
    if word_vectors is not None:
        vectors, found = word_vectors
        dimensions = min(vectors.size(1), model_config.hidden_size)
        with torch.no_grad():
            model.embedding.weight[found, :dimensions] = vectors[found, :dimensions]
    model = model.to(device)
    optimizer = optimizer_for(model, train_config)
    average = moving_average(model, optimizer, train_config.ema_decay)
    scored = model if average is None else average.module  # the weights validation scores and the checkpoint keeps
    torch.manual_seed(train_config.seed * 1000 + rank + 1)  # but each rank its own dropout masks
    state = {"epoch": 0, "history": [], "best_epoch": 0, "best_valid_loss": float("inf"), "best_valid_accuracy": 0.0}
    state["best_state"] = None
    state["part_best"] = {}
    if progress_path is not None and storage.exists(progress_path):
        state = _resume(progress_path, model, optimizer, average, model_config, train_config, rank)
    network = DistributedDataParallel(model) if world_size > 1 else model
    sampler = DistributedSampler(train, num_replicas=world_size, rank=rank, shuffle=True, seed=train_config.seed)
    facts = train.fact_counts()  # (N,) facts per example, the length bucketing reads
    started = time.perf_counter()
    epochs = tqdm(
        range(state["epoch"] + 1, train_config.max_epochs + 1),
        desc="epochs",
        unit="ep",
        disable=not progress or rank != 0,
        leave=False,
    )
    for epoch in epochs:
        if epoch - state["best_epoch"] > train_config.patience or _reached_target(state, train_config):
            break  # a resumed run that had already stopped
        sampler.set_epoch(epoch)
        epoch_started = time.perf_counter()
        supervise = train_config.supervise_gates
        local_batch = train_config.batch_size // world_size
        order = list(sampler)
        if train_config.bucket_by_length:
            order = bucketed(order, facts, local_batch, train_config.seed * 100_003 + epoch)
        train_metrics = run_epoch(network, train, local_batch, device, optimizer, order, supervise)
        train_seconds = time.perf_counter() - epoch_started
        valid_metrics = run_epoch(scored, valid, train_config.batch_size, device, supervise_gates=supervise)
        # every rank sees the same (reduced) losses, so all stop together
        if not (math.isfinite(train_metrics["loss"]) and math.isfinite(valid_metrics["loss"])):
            raise ConfigError(
                f"training diverged at epoch {epoch} (training loss {train_metrics['loss']}, validation loss "
                f"{valid_metrics['loss']}): lower learning_rate (now {train_config.learning_rate}); "
                "no checkpoint was written"
            )
        record = {
            "epoch": epoch,
            "train_loss": train_metrics["loss"],
            "train_accuracy": train_metrics["accuracy"],
            "valid_loss": valid_metrics["loss"],
            "valid_accuracy": valid_metrics["accuracy"],
            "train_seconds": train_seconds,
        }
        state["history"].append(record)
        state["epoch"] = epoch
        key = selection_key(train_config.select_by, record["valid_loss"], record["valid_accuracy"])
        if state["best_state"] is None or key < selection_key(
            train_config.select_by, state["best_valid_loss"], state["best_valid_accuracy"]
        ):
            state.update(best_epoch=epoch, best_valid_loss=record["valid_loss"])
            state["best_valid_accuracy"] = record["valid_accuracy"]
            state["best_state"] = _weights(scored)
        for part, examples in (valid_parts or {}).items():
            figures = run_epoch(scored, examples, train_config.batch_size, device, supervise_gates=supervise)
            best = state["part_best"].get(part)
            key = selection_key(train_config.select_by, figures["loss"], figures["accuracy"])
            if best is None or key < selection_key(train_config.select_by, best["loss"], best["accuracy"]):
                state["part_best"][part] = {"epoch": epoch, **figures, "state": _weights(scored)}
        if progress_path is not None:
            _save_progress(
                progress_path, state, model, optimizer, average, model_config, train_config, rank, world_size
            )
        epochs.set_postfix(valid_loss=f"{record['valid_loss']:.3f}", valid_acc=f"{record['valid_accuracy']:.3f}")
        if on_epoch is not None and rank == 0:
            on_epoch(record)
        if epoch - state["best_epoch"] >= train_config.patience or _reached_target(state, train_config):
            break
    return TrainResult(
        copy.deepcopy(state["best_state"]),
        state["best_epoch"],
        state["best_valid_loss"],
        state["best_valid_accuracy"],
        state["history"],
        time.perf_counter() - started,
        {part: TrainResult(b["state"], b["epoch"], b["loss"], b["accuracy"]) for part, b in state["part_best"].items()},
    )


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the CPU, apart from the live ones that training goes on changing."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _reached_target(state: dict, config: TrainConfig) -> bool:
    """The last epoch's validation accuracy reached `target_valid_accuracy`."""
    target = config.target_valid_accuracy
    return target is not None and bool(state["history"]) and state["history"][-1]["valid_accuracy"] >= target


def _rng_states(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """This rank's CPU and (on CUDA) device RNG states: dropout draws from the device's generator."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _save_progress(path, state, model, optimizer, average, model_config, train_config, rank, world_size) -> None:
    """Rank 0 writes the epoch's state, with every rank's RNG state, whole or not at all (dmn/storage.py)."""
    device = next(model.parameters()).device
    rng_states = [_rng_states(device)] if world_size == 1 else [None] * world_size
    if world_size > 1:
        dist.all_gather_object(rng_states, _rng_states(device))
    if rank != 0:
        return
    payload = {
        "format": PROGRESS_FORMAT,
        "model_config": model_config.model_dump(),
        "train_config": train_config.model_dump(exclude={"device"}),
        "world_size": world_size,
        **state,
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "average_state": None if average is None else average.state_dict(),
        "rng_states": [state for state, _ in rng_states],
        "device_rng_states": [state for _, state in rng_states],
    }
    storage.save_torch(payload, path)


def _resume(path, model, optimizer, average, model_config, train_config, rank) -> dict:
    """Load a progress checkpoint into `model`, `optimizer` and the moving `average` (if any); refuse a foreign or
    corrupt one untouched."""
    try:
        payload = storage.load_torch(path)
    except Exception as error:
        raise DataError(path, f"not a readable progress checkpoint ({error}); remove it to start over") from error
    if not isinstance(payload, dict) or payload.get("format") != PROGRESS_FORMAT:
        raise DataError(path, f"not a {PROGRESS_FORMAT} checkpoint; remove it to start over")
    if payload["model_config"] != model_config.model_dump() or payload["train_config"] != train_config.model_dump(
        exclude={"device"}
    ):
        raise DataError(path, "written for another configuration; remove it to start over")
    model.load_state_dict(payload["model_state"])
    optimizer.load_state_dict(payload["optimizer_state"])
    if average is not None:
        average.load_state_dict(payload["average_state"])
    if len(payload["rng_states"]) > rank:  # the same world size resumes exactly; another keeps fresh streams
        torch.set_rng_state(payload["rng_states"][rank])
        device_state = payload["device_rng_states"][rank]
        if device_state is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(device_state)
    keys = ("epoch", "history", "best_epoch", "best_valid_loss", "best_valid_accuracy", "best_state", "part_best")
    return {key: payload[key] for key in keys}
