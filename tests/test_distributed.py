"""Data-parallel training through torch.distributed's elastic launcher (gloo on this CPU), resume after a
kill, and the launcher's refusals."""

import os
import signal
import subprocess
import sys
import tempfile

import pytest
import torch

from dmn.config import DistributedConfig, TrainConfig
from dmn.distributed import DistributedTrainingError, launch
from dmn.errors import ConfigError, DataError
from tests.conftest import free_port
from tests.helpers import fail_first_attempt_on_rank_1, fail_on_rank_1, resumable_config, train_small

CONFIG = TrainConfig(max_epochs=3, patience=50, batch_size=32, seed=5, ema_decay=0.9)  # each rank its average


@pytest.fixture(autouse=True)
def _torchelastic_folders_in_tmp_path(tmp_path, monkeypatch):
    # the launcher's log folders (tempfile.mkdtemp in this process) go under the test's own folder, not /tmp,
    # where the folders of a launch in another test worker are
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def test_two_processes_train_like_one_process_with_the_same_global_batch(babi_en, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = torch.load(train_small(str(babi_en), str(tmp_path / "one"), CONFIG), weights_only=True)
    launch(train_small, (str(babi_en), str(tmp_path / "two"), CONFIG), DistributedConfig(nproc_per_node=2), "cpu")
    rank0 = torch.load(tmp_path / "two" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "two" / "rank1.pt", weights_only=True)
    assert rank0["world_size"] == 2
    for name, value in rank0["best_state"].items():
        assert torch.equal(value, rank1["best_state"][name]), name  # identical on both ranks
        assert torch.allclose(value, one["best_state"][name], atol=1e-4), name  # and as one process
    for two, single in zip(rank0["history"], one["history"]):
        assert two["train_loss"] == pytest.approx(single["train_loss"], rel=1e-4)
        assert two["valid_loss"] == pytest.approx(single["valid_loss"], rel=1e-4)


def test_two_nodes_of_one_process_rendezvous_on_localhost_and_train(babi_en, tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    script = (
        "import sys; from dmn.config import DistributedConfig, TrainConfig; from dmn.distributed import launch; "
        "from tests.helpers import train_small; "
        "launch(train_small, (sys.argv[1], sys.argv[2], TrainConfig(max_epochs=2, batch_size=32)), "
        "DistributedConfig(nnodes=2, node_rank=int(sys.argv[3]), rdzv_endpoint=sys.argv[4], rdzv_timeout=120), 'cpu')"
    )
    nodes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(babi_en), str(tmp_path), str(rank), endpoint], cwd=os.getcwd()
        )
        for rank in (0, 1)
    ]
    assert [node.wait(timeout=300) for node in nodes] == [0, 0]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2 and len(ranks[0]["history"]) == 2
    for name, value in ranks[0]["best_state"].items():
        assert torch.equal(value, ranks[1]["best_state"][name])


def test_killed_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(babi_en, tmp_path):
    epochs = 6
    (tmp_path / "straight").mkdir()
    straight = torch.load(
        train_small(str(babi_en), str(tmp_path / "straight"), resumable_config(epochs)),
        weights_only=True,
    )
    progress = tmp_path / "progress.pt"
    # the worker kills itself with SIGKILL once epoch 2 is checkpointed: a kill at a point that cannot race the run
    worker = subprocess.run(
        [sys.executable, "-m", "tests.helpers", str(babi_en), str(tmp_path), str(progress), str(epochs), "2"],
        cwd=os.getcwd(),
        timeout=300,
    )
    assert worker.returncode == -signal.SIGKILL
    assert not (tmp_path / "rank0.pt").exists()  # it never finished
    assert torch.load(progress, weights_only=True)["epoch"] == 2
    resumed = torch.load(
        train_small(str(babi_en), str(tmp_path), resumable_config(epochs), str(progress)),
        weights_only=True,
    )

    def metrics(history):
        return [{k: v for k, v in record.items() if k != "train_seconds"} for record in history]

    assert metrics(resumed["history"]) == metrics(straight["history"])
    for name, value in straight["best_state"].items():
        assert torch.equal(value, resumed["best_state"][name])


def test_corrupt_or_foreign_progress_checkpoint_is_refused_and_kept(babi_en, tmp_path):
    progress = tmp_path / "progress.pt"
    progress.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable progress checkpoint"):
        train_small(str(babi_en), str(tmp_path), CONFIG, str(progress))
    assert progress.read_bytes() == b"not a checkpoint"
    progress.unlink()
    train_small(str(babi_en), str(tmp_path), TrainConfig(max_epochs=1, batch_size=32), str(progress))
    written = progress.read_bytes()
    with pytest.raises(DataError, match="another configuration"):
        train_small(str(babi_en), str(tmp_path), TrainConfig(max_epochs=1, batch_size=16), str(progress))
    assert progress.read_bytes() == written


def test_failing_rank_error_reaches_the_caller():
    with pytest.raises(DistributedTrainingError, match="rank 1 failed.*bad shard at line 7"):
        launch(fail_on_rank_1, ("bad shard at line 7",), DistributedConfig(nproc_per_node=2), "cpu")


def test_a_failed_worker_is_restarted_by_the_launcher():
    config = DistributedConfig(nproc_per_node=2, max_restarts=1)
    assert launch(fail_first_attempt_on_rank_1, (), config, "cpu") == 1


def test_more_processes_than_cores_and_an_unreachable_endpoint_are_refused():
    with pytest.raises(ConfigError, match="--nproc-per-node"):
        launch(print, (), DistributedConfig(nproc_per_node=os.cpu_count() + 1), "cpu")
    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match=f"--rdzv-endpoint {closed}: no rendezvous answered"):
        launch(print, (), DistributedConfig(nnodes=2, node_rank=1, rdzv_endpoint=closed, rdzv_timeout=2), "cpu")
