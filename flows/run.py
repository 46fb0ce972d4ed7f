"""The DAG every application runs: ingest -> tokenise -> train (one model per unit and seed) -> evaluate ->
report -> register (-> first champion, when the model has none); a unit is trained once per seed and per
settings variant, and the best of them on validation is kept. An application's flow (flows/babi.py...) is
this with its typed configuration."""

from __future__ import annotations

import multiprocessing
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from dmn import storage
from dmn.apps import application
from dmn.apps.base import RunConfig
from dmn.operations_config import Gate
from dmn.pipeline import best_checkpoint, training_digest
from dmn.train import concurrent_trainings, stopping_on_interrupt
from tasks.steps import evaluate, ingest, promote_first, register, report, tokenise, train


class ServerInOwnSession(SubprocessASGIServer):
    """Prefect's temporary server, started in a session of its own. Ctrl-C in a terminal signals the whole
    foreground process group: a server in it would stop at once, and the interrupted flow run, unable to record
    its end, would retry for a minute and end in a traceback. This process stops it on its way out (Prefect's
    atexit handler)."""

    def _run_uvicorn_command(self) -> subprocess.Popen:
        # Prefect builds the server's command and environment and takes no Popen options: Popen is swapped for
        # this one call (the server starts once a process, before any training)
        spawn = subprocess.Popen
        subprocess.Popen = _PopenInOwnSession
        try:
            return super()._run_uvicorn_command()
        finally:
            subprocess.Popen = spawn


class _PopenInOwnSession(subprocess.Popen):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, start_new_session=True, **kwargs)


def use_server_in_own_session() -> None:
    """Make the temporary server that Prefect starts at its first call without PREFECT_API_URL a
    ServerInOwnSession (Prefect keeps one server a port, and takes the one made first)."""
    if not PREFECT_API_URL.value():
        ServerInOwnSession()


def run_application(app_name: str, config: RunConfig, gate: Gate) -> dict:
    """Run the DAG of `app_name` inside the calling flow; returns {"report", "version", "decision"} (None on
    nodes other than 0, which only train). A new version of a model with no champion yet becomes champion if
    it clears `gate`'s first-champion bar ("decision"; None when there is a champion or nothing was new)."""
    app = application(app_name)
    data_root = storage.absolute(config.data_root)  # cache entries must not depend on the working directory
    raw = _fresh(ingest, ingest(app_name, config, data_root), app_name, config, data_root)
    dataset = _fresh(tokenise, tokenise(app_name, raw, data_root), app_name, raw, data_root)
    units = app.units(config)
    dataset.require(units)
    dataset.require_examples(units, ("train", "test"), config.source)  # no dev split: the training file's cut
    variants = {unit: app.setting_variants(config, unit, dataset) for unit in units}
    joint = app.joint_settings(config, units, dataset)  # {unit: settings} of one model of all the units, or None
    seeds = config.seeds or [config.train.seed]
    runs = [(unit, seed, settings) for unit in units for seed in seeds for settings in variants[unit]]
    runs += [(tuple(units), seed, joint) for seed in seeds] if joint else []
    trainings = concurrent_trainings(config.concurrency, len(runs), config.train.device, config.distributed)
    with _trainers(trainings) as trainers:
        futures = [
            trainers.submit(train, _train_parameters(app_name, dataset, run, config, data_root, trainings))
            for run in runs
        ]
        paths = [future.result() for future in futures]
    if config.distributed.node_rank != 0:  # node 0 holds rank 0: it writes the checkpoints, evaluates, registers
        get_run_logger().info("node %d: training done; node 0 evaluates and registers", config.distributed.node_rank)
        return {"report": None, "version": None, "decision": None}
    paths = [
        _fresh(train, path, **_train_parameters(app_name, dataset, run, config, data_root, 1))
        for run, path in zip(runs, paths)
    ]
    # restarts, variants and the joint model: keep, per unit, the best model (the paper: the lowest validation
    # loss of its restarts; see TrainConfig.select_by)
    candidates = {unit: [] for unit in units}
    for (run_unit, _, _), path in zip(runs, paths):
        for unit, checkpoint in path.items() if isinstance(path, dict) else [(run_unit, path)]:
            candidates[unit].append(checkpoint)
    checkpoints = {unit: best_checkpoint(candidates[unit], config.train.select_by) for unit in units}
    results = [evaluate(app_name, dataset, u, checkpoints[u]) for u in units]
    trained = {"variants": variants, "joint": joint} if joint else variants
    digest = training_digest(app, dataset.digest, units, trained, config.model, config.train, seeds)
    document = report(app_name, config, dataset, results, digest)
    version = register(app_name, config, dataset, checkpoints, document)
    decision = promote_first(config.model_name, version.version, gate, config.tracking_uri) if version.created else None
    return {"report": document, "version": version, "decision": decision}


def _train_parameters(app_name: str, dataset, run: tuple, config: RunConfig, data_root: str, trainings: int) -> dict:
    """The `train` task's parameters for one (unit, seed, settings) of the run."""
    unit, seed, settings = run
    return {
        "app_name": app_name,
        "dataset": dataset,
        "unit": unit,
        "settings": settings,
        "seed": seed,
        "model": config.model,
        "train": config.train,
        "data_root": data_root,
        "distributed": config.distributed,
        "trainings": trainings,
    }


@contextmanager
def _trainers(trainings: int) -> Iterator[TaskRunner]:
    """Where the trainings run (see _runner). Left by an exception (Ctrl-C; SIGTERM, as a Prefect worker cancels a
    flow run; a failed training), the trainings stop instead of running to their end while the runner waits for
    them: one in a thread of this process at its next batch (dmn.train.stopping_on_interrupt), processes by
    SIGTERM until the runner has ended (a pool's, a data-parallel launch's ranks, and any started meanwhile: a
    launcher's restart, a queued training). Each keeps its last epoch's progress checkpoint, from which the same
    command resumes."""
    runner_ended = threading.Event()
    try:
        with _runner(trainings) as runner, stopping_on_interrupt():
            try:
                yield runner
            except BaseException:
                threading.Thread(target=_terminate_children, args=(runner_ended,), daemon=True).start()
                raise
    finally:
        runner_ended.set()


def _terminate_children(until: threading.Event) -> None:
    """SIGTERM to every multiprocessing child of this process, again every 0.2 s until `until` is set. (The
    temporary Prefect server is a subprocess.Popen child, not a multiprocessing one: it stops at exit.)"""
    while True:
        for child in multiprocessing.active_children():
            child.terminate()
        if until.wait(0.2):
            return


@contextmanager
def _runner(trainings: int) -> Iterator[TaskRunner]:
    """One training at a time in this flow's process, or `trainings` at once in as many processes (threads of
    one process would queue on the interpreter's lock between the small operations of a DMN). A flow on a
    temporary Prefect server of its own (no PREFECT_API_URL) points the processes at it: each would start one
    more."""
    if trainings == 1:
        with ThreadPoolTaskRunner(max_workers=1) as runner:
            yield runner
        return
    api_url = PREFECT_API_URL.value()
    if not api_url:
        server = SubprocessASGIServer()  # the one this process's client started (one per process)
        server.start()  # already running: returns at once
        api_url = server.api_url
    with temporary_settings(updates={PREFECT_API_URL: api_url}), ProcessPoolTaskRunner(max_workers=trainings) as runner:
        yield runner


def _fresh(task, result, *args, **kwargs):
    """`result` of `task(*args, **kwargs)`, or the task run anew when `result` came from the cache and points at files
    removed since (Prefect's cache keys on the inputs and cannot know)."""
    if isinstance(result, str):
        stored = storage.exists(result)
    elif isinstance(result, dict):  # a joint training's checkpoints
        stored = all(storage.exists(path) for path in result.values())
    else:
        stored = result.is_stored()
    if stored:
        return result
    get_run_logger().warning("%s: the files of its cached result are gone; running it again", task.name)
    return task.with_options(refresh_cache=True)(*args, **kwargs)
