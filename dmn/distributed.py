"""Launch a training function on every rank with torch.distributed's elastic launcher (torchrun's engine).

One process and one node: the function runs in this process, without a process group. Otherwise the
launcher starts `nproc_per_node` workers on this node, rendezvous with the other nodes (c10d, hosted by
node 0), restarts failed workers up to `max_restarts` times, and returns rank 0's result; a failure raises
DistributedTrainingError with the failing rank's error. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import gc
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, record
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from dmn.config import DistributedConfig
from dmn.errors import ConfigError, DMNError
from dmn.train import available_cores, resolve_device, share_cores


class DistributedTrainingError(DMNError, RuntimeError):
    """A training worker failed; the message holds its rank and error."""


def check_launch(config: DistributedConfig, device: str) -> None:
    """Refuse more processes than devices, and a rendezvous endpoint that no node 0 answers."""
    target = resolve_device(device)
    available = torch.cuda.device_count() if target.type == "cuda" else available_cores()
    if config.nproc_per_node > available:
        kind = "CUDA devices" if target.type == "cuda" else "CPU cores"
        raise ConfigError(f"--nproc-per-node {config.nproc_per_node}: this node has {available} {kind}")
    if config.node_rank >= config.nnodes:
        raise ConfigError(f"--node-rank {config.node_rank} must be below --nnodes {config.nnodes}")
    if config.nnodes > 1 and config.node_rank > 0:
        host, _, port = config.rdzv_endpoint.rpartition(":")
        deadline = time.monotonic() + config.rdzv_timeout
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
                return
            except (OSError, ValueError) as error:
                if time.monotonic() >= deadline or isinstance(error, ValueError):
                    raise ConfigError(
                        f"--rdzv-endpoint {config.rdzv_endpoint}: no rendezvous answered within "
                        f"{config.rdzv_timeout} s ({error}); start node 0 first or check the address"
                    ) from error
                time.sleep(1)


def launch(function: Callable, args: tuple, config: DistributedConfig, device: str, trainings: int = 1):
    """function(*args) on every rank; returns rank 0's return value (None on nodes other than 0). `trainings`:
    how many launches share this node at once (each rank takes its share of the cores)."""
    if not config.distributed:
        return function(*args)
    check_launch(config, device)
    single_node = config.nnodes == 1
    launch_config = LaunchConfig(
        min_nodes=config.nnodes,
        max_nodes=config.nnodes,
        nproc_per_node=config.nproc_per_node,
        run_id=config.rdzv_id,
        rdzv_backend="c10d",
        # one node: a free port, so concurrent launches (fan-out) never collide
        rdzv_endpoint="127.0.0.1:0" if single_node else config.rdzv_endpoint,
        rdzv_configs={"join_timeout": config.rdzv_timeout}
        if single_node
        else {"join_timeout": config.rdzv_timeout, "is_host": config.node_rank == 0},
        max_restarts=config.max_restarts,
        monitor_interval=0.2,
        start_method="spawn",
    )
    try:
        results = elastic_launch(launch_config, _worker)(function, args, device, trainings)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
        raise DistributedTrainingError(
            f"training rank {rank} failed (exit code {failure.exitcode}): {message}"
        ) from None
    return results.get(0)


@record
def _worker(function: Callable, args: tuple, device: str, trainings: int):
    """One rank: join the process group, run, leave cleanly."""
    use_cuda = resolve_device(device).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    else:
        share_cores(int(os.environ["LOCAL_WORLD_SIZE"]) * trainings)
    # Each restart round joins under its own key prefix: the launcher's store outlives a failed round, and
    # a restarted rank must not read the addresses of the ranks that died (gloo then dials dead ports).
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=not agent_store and rank == 0,
        multi_tenant=True,
        timeout=timedelta(minutes=10),
    )
    prefixed = dist.PrefixStore(f"/dmn/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    dist.init_process_group("nccl" if use_cuda else "gloo", store=prefixed, rank=rank, world_size=world_size)
    try:
        return function(*args)
    finally:
        dist.destroy_process_group()
        gc.collect()  # DDP's reducer freed before interpreter exit avoids an abort at exit (STACK.md)
