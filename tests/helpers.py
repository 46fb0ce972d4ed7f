"""Functions the distributed tests run inside spawned workers and subprocesses (importable by name)."""

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dmn.apps.babi import APPLICATION as BABI
from dmn.config import ModelConfig, TrainConfig
from dmn.data.babi import parse_babi_file
from dmn.data.vocab import Vocabulary, tokenize
from dmn.models import ModelSizes
from dmn.train import train_dmn, world

MODEL = ModelConfig(hidden_size=16, dropout=0.0)


def small_task_1(babi_en: Path, n_train: int = 256, n_valid: int = 64):
    """Encoded train and validation slices of bAbI task 1 and their vocabulary."""
    questions = parse_babi_file(next(Path(babi_en).glob("qa1_*_train.txt")))
    rows = [
        {"story_tokens": [tokenize(s) for s in q.story], "question_tokens": tokenize(q.question), "answer": q.answer}
        for q in questions
    ]
    vocab = Vocabulary.build(
        [s for r in rows for s in r["story_tokens"]] + [r["question_tokens"] for r in rows], [r["answer"] for r in rows]
    )
    train, valid = rows[:n_train], rows[-n_valid:]
    cut = {"sentence_limit": 70}
    return BABI.encode(train, vocab, cut, "class"), BABI.encode(valid, vocab, cut, "class"), vocab


def resumable_config(epochs: int) -> TrainConfig:
    """The training of the resume test: a moving average of the weights too, which a resumed run must restore."""
    return TrainConfig(max_epochs=epochs, patience=50, batch_size=32, ema_decay=0.9)


def train_small(
    babi_en: str,
    out_dir: str,
    train_config: TrainConfig,
    progress_path: str | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> str:
    """Train on the small slice; every rank saves its final parameters and history to out_dir/rank{r}.pt."""
    train, valid, vocab = small_task_1(Path(babi_en))
    sizes = ModelSizes(len(vocab.words), len(vocab.answers))
    result = train_dmn(train, valid, MODEL, train_config, sizes, on_epoch=on_epoch, progress_path=progress_path)
    rank, world_size = world()
    live = {k: v.detach().cpu() for k, v in result.state_dict.items()}
    path = Path(out_dir) / f"rank{rank}.pt"
    torch.save({"world_size": world_size, "best_state": live, "history": result.history}, path)
    return str(path)


def fail_first_attempt_on_rank_1() -> int:
    """Fails once on rank 1 while rank 0 is busy; after the launcher's restart returns the restart count."""
    restarts = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    torch.distributed.barrier()  # fail once the group is up, as a crash mid-training would
    if restarts == 0:
        if world()[0] == 1:
            raise RuntimeError("first attempt fails")
        time.sleep(30)  # rank 0 is still training when rank 1 dies: the agent stops it and restarts both
    torch.distributed.barrier()
    return restarts


def fail_on_rank_1(message: str) -> None:
    torch.distributed.barrier()  # fail once the group is up, as a crash mid-training would
    if world()[0] == 1:
        raise ValueError(message)


def kill_self_after_epoch(last: int):
    """An `on_epoch` that kills this process with SIGKILL, as `kill -9` would, once epoch `last` is checkpointed."""

    def on_epoch(record: dict) -> None:
        if record["epoch"] == last:
            os.kill(os.getpid(), signal.SIGKILL)

    return on_epoch


if __name__ == "__main__":  # python -m tests.helpers BABI_EN OUT_DIR PROGRESS_PATH MAX_EPOCHS KILLED_AFTER_EPOCH
    train_small(
        sys.argv[1],
        sys.argv[2],
        resumable_config(int(sys.argv[4])),
        sys.argv[3],
        kill_self_after_epoch(int(sys.argv[5])),
    )
