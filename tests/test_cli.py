"""The `dmn` command in a subprocess, as a user runs it: exit codes, messages, and what it prints."""

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client


def dmn(*args, prefect_api=None, cwd=None, timeout=600):
    env = dict(os.environ)
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    command = [sys.executable, "-m", "flows.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("value", ["21", "0", "1,x"])
def test_unknown_babi_task_id_is_refused_by_name(value):
    done = dmn("run", "babi", "--babi-tasks", value)
    assert done.returncode == 2
    assert "--babi-tasks" in done.stderr and "valid ids are 1-20" in done.stderr


def test_a_negative_count_of_renamed_copies_is_refused_by_name(tmp_path):
    done = dmn("run", "babi", "--babi-tasks", "all", "--joint-entity-copies", "-1", "--data-root", tmp_path / "data")
    assert done.returncode == 2
    assert "joint_entity_copies" in done.stderr and "greater than or equal to 0" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "data").exists()


def test_the_moving_average_is_babis_default_and_the_option_sets_or_turns_it_off(capsys):
    from flows.cli import build_parser, config_from_args, main

    def train(*options):
        return config_from_args(build_parser().parse_args(["run", *options])).train

    assert train("babi").ema_decay == 0.999 and train("sst").ema_decay is None  # the papers' elsewhere
    assert train("babi", "--ema-decay", "none").ema_decay is None
    assert train("sst", "--ema-decay", "0.99").ema_decay == 0.99
    for value in ("1", "0", "x"):
        with pytest.raises(SystemExit) as exit_status:
            main(["run", "babi", "--ema-decay", value])
        error = capsys.readouterr().err
        assert (
            exit_status.value.code == 2 and f"--ema-decay: expected a decay in (0, 1) or 'none', got '{value}'" in error
        )


def test_run_prints_the_table_and_the_registered_version(prefect_api, babi_root, tmp_path):
    done = dmn(
        "run",
        "babi",
        "--source",
        babi_root,
        "--data-root",
        tmp_path / "data",
        "--epochs",
        2,
        "--hidden",
        16,
        "--answer-interactions",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--model-name",
        "cli-test",
        prefect_api=prefect_api,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "| 1 |" in done.stdout
    assert "Model registered cli-test version 1: models:/cli-test/1" in done.stdout
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = MlflowClient(tracking).get_model_version("cli-test", "1")
    assert version.tags["units"] == "1"
    assert MlflowClient(tracking).get_run(version.run_id).data.params["model.answer_interactions"] == "True"
    # two epochs: below the first champion's bar (at most 50 % mean error), so the run says how to promote
    assert "Not champion (not champion: no champion yet, and a first champion's mean error" in done.stdout
    assert f"dmn promote cli-test --version 1 --tracking-uri {tracking}" in done.stdout
    assert "Ask it:   dmn ask models:/cli-test/1 --story story.txt" in done.stdout
    refused = dmn("promote", "cli-test", "--tracking-uri", tracking, prefect_api=prefect_api, cwd=tmp_path)
    assert refused.returncode == 1 and "champion stays version None" in refused.stdout, refused.stderr
    forced = dmn(
        "promote", "cli-test", "--force", "--reason", "demo", "--tracking-uri", tracking, prefect_api=prefect_api
    )
    assert forced.returncode == 0 and "champion is now version 1" in forced.stdout, forced.stderr
    with get_client(sync_client=True) as prefect:  # CLI decisions are Prefect artifacts too
        decisions = [a.data for a in prefect.read_artifacts() if a.key == "cli-test-decision"]
    assert any("**force** cli-test version 1: forced: demo" in text for text in decisions)


def test_concurrent_trainings_report_to_the_temporary_server_of_the_run(babi_root, tmp_path):
    """Without PREFECT_API_URL `dmn run` starts a temporary Prefect server; the processes that train at once
    (task 1 with and without renamed copies) report to it rather than each starting one more."""
    environment = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_LOGGING_LEVEL="INFO")
    environment.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "flows.cli", "run", "babi", "--source", str(babi_root), "--epochs", "1"]
    command += ["--hidden", "8", "--concurrency", "2", "--data-root", str(tmp_path / "data")]
    command += ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert log.count("Starting temporary server") == 1, log[-3000:]
    assert "Task run 'train-babi-1-seed-0 (4 renamed copies)' - Finished in state Completed()" in log
    assert "Task run 'train-babi-1-seed-0' - Finished in state Completed()" in log


def _alive(pid: str) -> bool:
    """The process exists and has not exited (a zombie waits only to be reaped)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


# Ctrl-C in a terminal signals the whole foreground process group; a Prefect worker cancelling a flow run sends
# SIGTERM to the run's process alone
@pytest.mark.parametrize(
    ("interrupt", "to_group", "copies"), [(signal.SIGINT, True, "0"), (signal.SIGTERM, False, "1,0")]
)
def test_an_interrupted_run_stops_its_trainings_keeps_their_progress_and_says_how_to_resume(
    interrupt, to_group, copies, babi_root, tmp_path
):
    """Ctrl-C with one training, in a thread of the run's process; SIGTERM with two, in processes of their own (task
    1 with and without renamed copies). `dmn run` stops them at once instead of training on to their 500 epochs,
    keeps each one's progress checkpoint, records the flow run's end, stops its temporary Prefect server (which
    Ctrl-C does not reach), registers nothing, says so in one line and ends by the signal, as Python ends on an
    uncaught Ctrl-C."""
    environment = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"))
    environment.pop("PREFECT_API_URL", None)
    models = tmp_path / "data" / "models"
    trainings = len(copies.split(","))
    # `dmn` whose Ctrl-C raises KeyboardInterrupt whatever this process left it (a background job ignores SIGINT)
    command = [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "from flows.cli import main; sys.exit(main())"]  # fmt: skip
    command += ["run", "babi", "--source", str(babi_root), "--hidden", "8", "--joint", "no", "--entity-copies", copies]
    command += ["--epochs", "500", "--patience", "500", "--target-valid-accuracy", "none"]
    command += ["--concurrency", str(trainings), "--data-root", str(tmp_path / "data")]
    command += ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    with open(tmp_path / "log", "w") as log:  # a file, not a pipe that the run could fill and block on
        run = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=tmp_path, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 300
            while len(list(models.glob("*/*.progress.pt"))) < trainings:  # every training has finished an epoch
                assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()[-3000:]
                time.sleep(0.5)
            children = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True).stdout.split()
            if to_group:
                os.killpg(run.pid, interrupt)
            else:
                run.send_signal(interrupt)
            returncode = run.wait(timeout=60)
        finally:
            run.kill()
    output = (tmp_path / "log").read_text()
    assert returncode == -interrupt, output[-3000:]
    name = signal.Signals(interrupt).name
    assert f"interrupted ({name}); trainings stopped: the same command resumes them from their last epoch" in output
    assert "Traceback" not in output and "Crash detected! Execution was aborted by" in output
    # no process of the run is left: the temporary Prefect server, and the pool's trainings
    assert len(children) >= (1 if trainings == 1 else 1 + trainings)
    deadline = time.monotonic() + 30
    while [pid for pid in children if _alive(pid)]:
        assert time.monotonic() < deadline, [Path(f"/proc/{pid}/cmdline").read_text() for pid in children]
        time.sleep(0.5)
    for progress in models.glob("*/*.progress.pt"):
        assert 1 <= torch.load(progress, weights_only=False)["epoch"] < 500
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_registered_models() == []


def test_unsafe_tarball_exits_2_naming_the_member_and_writes_nothing(prefect_api, tmp_path):
    tarball = tmp_path / "tasks_1-20_v1-2.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        member = tarfile.TarInfo("../../qa1_evil_train.txt")
        member.size = 3
        archive.addfile(member, io.BytesIO(b"1 x"))
    done = dmn(
        "run",
        "babi",
        "--source",
        tarball,
        "--data-root",
        tmp_path / "data",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        prefect_api=prefect_api,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr  # the run logs say it, no traceback
    assert f"error: {tarball}: member '../../qa1_evil_train.txt' points outside the archive root" in done.stderr
    assert not (tmp_path / "data" / "raw").exists() and not (tmp_path / "data" / "tokens").exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_ask_answers_and_shows_the_attention_of_every_pass(trained, tmp_path):
    _, config, _ = trained
    story = tmp_path / "story.txt"
    story.write_text("John went to the office.\nMary travelled to the bedroom.\nJohn journeyed to the kitchen.\n")
    done = dmn(
        "ask",
        "models:/dmn-babi/1",
        "--story",
        story,
        "--question",
        "Where is John?",
        "--tracking-uri",
        config.tracking_uri,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("answer: kitchen")
    assert "pass 1" in done.stdout and "pass 3" in done.stdout
    assert sum("John journeyed to the kitchen." in line for line in lines) == 1
    warned = dmn(
        "ask",
        "models:/dmn-babi/1",
        "--story",
        story,
        "--question",
        "Where is Zorro?",
        "--tracking-uri",
        config.tracking_uri,
    )
    assert warned.returncode == 0 and "warning: words the model never saw in training: zorro" in warned.stderr
    assert "probability 0." in lines[0] or "probability 1.000" in lines[0]


@pytest.mark.parametrize(
    "command, message",
    [
        (["ask", "models:/dmn-babi/9", "--sentence", "x"], "models:/dmn-babi/9: Model Version (name=dmn-babi, version"),
        (["ask", "models:/dmn-babi@nope", "--sentence", "x"], "models:/dmn-babi@nope: "),
        (["audit", "no-such-model"], "no-such-model: Registered Model with name=no-such-model not found"),
    ],
)  # fmt: skip
def test_a_missing_model_version_or_alias_is_one_line_naming_the_uri(trained, command, message):
    _, config, _ = trained
    done = dmn(*command, "--tracking-uri", config.tracking_uri)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and config.tracking_uri in done.stderr


@pytest.mark.parametrize("application", ["babi", "sst", "pos"])
def test_every_application_has_its_run_command_and_help(application, capsys):
    from flows.cli import main

    with pytest.raises(SystemExit) as exit_status:
        main(["run", application, "--help"])
    shown = capsys.readouterr().out
    assert exit_status.value.code == 0 and f"usage: dmn run {application}" in shown
    assert "--model {dmn+,dmn}" in shown and "--source" in shown and "--word-vectors" in shown


def test_the_run_forms_show_every_default_and_describe_every_field():
    """The parameter schemas Prefect builds for the UI's Run forms (what `prefect deploy` sends)."""
    from prefect.utilities.callables import parameter_schema

    from flows.operations import retrain_flow
    from flows.pos import pos_flow
    from flows.sst import sst_flow
    from flows.vqa import vqa_flow

    retrain = parameter_schema(retrain_flow.fn).model_dump_for_openapi()
    babi = retrain["definitions"]["BabiRunConfig"]["properties"]
    assert babi["max_sentences_by_task"]["default"] == {"3": 130} and babi["babi_tasks"]["default"] == [1]
    sst = parameter_schema(sst_flow.fn).model_dump_for_openapi()["definitions"]["SstRunConfig"]["properties"]
    assert sst["model"]["default"]["passes"] == 2 and sst["train"]["default"]["max_epochs"] == 30
    pos = parameter_schema(pos_flow.fn).model_dump_for_openapi()["definitions"]["PosRunConfig"]["properties"]
    assert pos["model"]["default"]["answer"] == "tags"
    vqa_form = parameter_schema(vqa_flow.fn).model_dump_for_openapi()
    vqa = vqa_form["definitions"]["VqaRunConfig"]["properties"]
    assert vqa["model"]["default"]["input"] == "regions" and vqa["augment"]["default"] is True
    assert vqa["datasets"]["default"] == ["shapes"] and "reads_images" not in vqa  # a class constant, not a field
    for schema in (retrain, parameter_schema(sst_flow.fn).model_dump_for_openapi(), vqa_form):
        for name, definition in schema["definitions"].items():
            undescribed = [field for field, spec in definition["properties"].items() if not spec.get("description")]
            assert not undescribed, (name, undescribed)
