"""The bAbI flow end to end against a real Prefect API and MLflow on SQLite: registration, caching, the
registry round trip in a fresh process, and bad input that leaves nothing behind."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from dmn.config import TrainConfig
from dmn.errors import DataError
from flows.babi import babi_flow
from tasks.steps import ingest
from tests.conftest import flow_config as _config

UNSEEN_STORIES = [
    (
        "Daniel journeyed to the bedroom.\nMary moved to the hallway.\nDaniel went to the garden.",
        "Where is Daniel?",
        "garden",
    ),
    ("Sandra went back to the office. John travelled to the kitchen.", "Where is John?", "kitchen"),
    (
        "1 Mary went to the bathroom.\n2 Mary journeyed to the hallway.\n3 Sandra moved to the garden.",
        "Where is Mary?",
        "hallway",
    ),
]


def _task_1_source(babi_en: Path, tmp_path: Path) -> Path:
    """`tmp_path/source`: a copy of bAbI task 1's files (to damage, or to lack the other tasks)."""
    source = tmp_path / "source"
    source.mkdir()
    for path in babi_en.glob("qa1_*"):
        shutil.copy(path, source / path.name)
    return source


def _task_runs(flow_state) -> list[tuple[str, str]]:
    """(name, state) of every task run of the flow run (names repeat when a task ran twice)."""
    flow_run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        return [(run.name, run.state.name) for run in client.read_task_runs(flow_run_filter=flow_run_filter)]


def _task_states(flow_state) -> dict[str, str]:
    return dict(_task_runs(flow_state))


def test_first_run_trains_evaluates_and_registers(trained):
    tmp, config, state = trained
    outcome = state.result()
    report, version = outcome["report"], outcome["version"]
    assert version.created and version.version == "1"
    decision = outcome["decision"]  # a first version clearing the first champion's bar (task 1: >= 95 %)
    assert decision.promoted and decision.reason.startswith("no champion yet; clears the first champion's bar")
    (task_1,) = report["units"]
    assert task_1["unit"] == 1 and task_1["accuracy"] >= 0.95
    assert set(_task_states(state).values()) == {"Completed"}

    client = MlflowClient(config.tracking_uri)
    registered = client.get_model_version(config.model_name, "1")
    assert registered.tags["training_digest"] == report["training_digest"]
    assert registered.tags["data_digest"] == report["data_digest"]
    run = client.get_run(registered.run_id)
    assert run.data.params["train.batch_size"] == "32" and run.data.params["babi_tasks"] == "1"
    assert run.data.metrics["babi_task_1.test_accuracy"] == task_1["accuracy"]
    assert len(client.get_metric_history(run.info.run_id, "babi_task_1.valid_loss")) == task_1["epochs"]
    mlflow.set_tracking_uri(config.tracking_uri)
    evaluation = json.loads(
        open(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="report/evaluation.json")).read()
    )
    assert evaluation["units"][0]["accuracy"] == task_1["accuracy"]
    page = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="report/evaluation.html"))
    text = page.read_text()
    assert text.count('src="data:image/png;base64,') == 3  # training curves and two heat maps, embedded
    assert "No champion yet: no deltas." in text and report["data_digest"] in text
    assert "http" not in text.split("<body>")[1]

    with get_client(sync_client=True) as prefect:
        artifact = prefect.read_latest_artifacts()
        assert any(a.key == "dmn-babi-evaluation" and "| 1 |" in a.data for a in artifact)


def test_unchanged_second_run_hits_every_cache_and_registers_nothing(trained):
    tmp, config, _ = trained
    state = babi_flow(config, return_state=True)
    states = _task_states(state)
    for step in ("ingest", "tokenise", "train-babi-1-", "evaluate-babi-1"):
        assert [s for name, s in states.items() if name.startswith(step)] == ["Cached"], states
    version = state.result()["version"]
    assert not version.created and version.version == "1"
    assert len(MlflowClient(config.tracking_uri).search_model_versions(f"name = '{config.model_name}'")) == 1


def test_registered_version_answers_unseen_stories_in_a_fresh_process(trained):
    tmp, config, _ = trained
    script = textwrap.dedent(
        f"""
        import json, sys, mlflow, pandas
        mlflow.set_tracking_uri({config.tracking_uri!r})
        model = mlflow.pyfunc.load_model("models:/{config.model_name}/1")
        stories = json.loads(sys.stdin.read())
        frame = pandas.DataFrame({{"story": [s for s, _, _ in stories], "question": [q for _, q, _ in stories]}})
        print(json.dumps(list(model.predict(frame))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(UNSEEN_STORIES),
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [answer for _, _, answer in UNSEEN_STORIES]


def test_unknown_words_at_ask_time_answer_with_a_warning(trained):
    from dmn.serving import UnknownWordsWarning

    tmp, config, _ = trained
    mlflow.set_tracking_uri(config.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{config.model_name}/1").unwrap_python_model()
    with pytest.warns(UnknownWordsWarning, match="teleported"):
        answer = model.answer({"story": "Mary teleported to the kitchen.", "question": "Where is Mary?"})
    assert answer.unknown_words == ["teleported"] and answer.answer == "kitchen"
    assert len(answer.gates) == 3 and len(answer.gates[0]) == 1


@pytest.mark.parametrize(
    "bad_line, message",
    [("2 Where is Mary?\tkitchen\t9", "supporting fact '9'"), ("2 Where is Mary?", "expected|no answer")],
)
def test_bad_data_fails_the_flow_and_writes_nothing(prefect_api, babi_en, tmp_path, bad_line, message):
    source = _task_1_source(babi_en, tmp_path)
    bad = source / "qa1_single-supporting-fact_test.txt"
    lines = bad.read_text().splitlines()
    lines[1] = bad_line
    bad.write_text("\n".join(lines) + "\n")
    config = _config(tmp_path)
    with pytest.raises(DataError, match=message) as caught:
        babi_flow(config)
    assert str(bad) in str(caught.value) or "qa1_babi_test.txt:2" in str(caught.value)
    assert not (tmp_path / "data" / "tokens").exists() and not (tmp_path / "data" / "models").exists()
    assert not MlflowClient(config.tracking_uri).search_registered_models()


def test_requested_task_missing_from_the_source_fails_before_training(prefect_api, babi_en, tmp_path):
    _task_1_source(babi_en, tmp_path)
    config = _config(tmp_path, babi_tasks=[1, 2])
    with pytest.raises(DataError, match=r"source: bAbI task\(s\) \[2\] of --babi-tasks not there \(it has \[1\]\)"):
        babi_flow(config)
    assert not any((tmp_path / "data").iterdir())  # refused before anything is stored
    assert not MlflowClient(config.tracking_uri).search_registered_models()


def test_a_cached_ingest_still_refuses_a_task_the_source_lacks(prefect_api, babi_en, tmp_path):
    _task_1_source(babi_en, tmp_path)
    data_root = str(tmp_path / "data")

    @flow
    def ingest_only(config):
        return ingest("babi", config, data_root, return_state=True)

    assert ingest_only(_config(tmp_path, babi_tasks=[1])).is_completed()
    assert ingest_only(_config(tmp_path, babi_tasks=[1])).name == "Cached"  # the same source and tasks: cached
    with pytest.raises(DataError, match=r"bAbI task\(s\) \[2\] of --babi-tasks not there \(it has \[1\]\)"):
        ingest_only(_config(tmp_path, babi_tasks=[1, 2]))  # the flow fails with its task


def test_missing_test_file_and_wrong_checksum_fail_the_flow_and_write_nothing(prefect_api, babi_en, tmp_path):
    from dmn.data.sources import BUNDLED_TARBALL

    source = tmp_path / "source"
    source.mkdir()
    (source / "qa1_single-supporting-fact_train.txt").write_bytes(
        (babi_en / "qa1_single-supporting-fact_train.txt").read_bytes()
    )
    config = _config(tmp_path)
    with pytest.raises(DataError, match="bAbI task 1: the test file is missing"):
        babi_flow(config)
    with pytest.raises(DataError, match="sha256 is .*, expected 00"):
        babi_flow(_config(tmp_path, source=str(BUNDLED_TARBALL), source_sha256="00" * 32))
    assert not (tmp_path / "data" / "raw").exists() and not (tmp_path / "data" / "tokens").exists()
    assert not MlflowClient(config.tracking_uri).search_registered_models()


def test_seed_restarts_fan_out_data_parallel_and_keep_the_lowest_validation_loss(
    prefect_api, babi_en, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # MLflow writes a SQLite store's artifacts under the working directory
    from dmn.checkpoint import load_checkpoint
    from dmn.config import DistributedConfig, ModelConfig, TrainConfig

    (tmp_path / "source").symlink_to(babi_en)
    config = _config(
        tmp_path,
        seeds=[1, 2],
        concurrency=2,
        distributed=DistributedConfig(nproc_per_node=2),
        model=ModelConfig(hidden_size=8),
        train=TrainConfig(max_epochs=2, batch_size=32),
    )
    state = babi_flow(config, return_state=True)
    states = _task_states(state)
    assert {name for name in states if name.startswith("train")} == {
        "train-babi-1-seed-1",
        "train-babi-1-seed-2",
    }
    trained = sorted((tmp_path / "data" / "models").rglob("babi_task_1.pt"))
    assert len(trained) == 2 and not list((tmp_path / "data" / "models").rglob("*.progress.pt"))
    losses = {load_checkpoint(p)[1]["train_config"]["seed"]: load_checkpoint(p)[1]["best_valid_loss"] for p in trained}
    registered = MlflowClient(config.tracking_uri).get_model_version(config.model_name, "1")
    run = MlflowClient(config.tracking_uri).get_run(registered.run_id)
    best_seed = min(losses, key=losses.get)
    kept = state.result()["report"]["units"][0]
    assert kept["seed"] == best_seed and run.data.params["seeds"] == "1,2"


def test_each_settings_variant_trains_a_model_and_validation_keeps_the_best(
    prefect_api, babi_en, tmp_path, monkeypatch
):
    """bAbI 1k's default: every task with and without renamed copies of its stories; the report says which. The
    two trainings run at once (the default on a CPU of 2 cores or more), each in a process of its own, and
    log to the flow run like any task."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from dmn.checkpoint import load_checkpoint
    from dmn.config import ModelConfig
    from dmn.report import report_markdown

    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")  # for the training processes, which read it afresh
    (tmp_path / "source").symlink_to(babi_en)
    train = TrainConfig(max_epochs=3, patience=3, batch_size=32, select_by="valid_accuracy", ema_decay=0.99)
    config = _config(tmp_path, entity_copies=[1, 0], model=ModelConfig(hidden_size=16), train=train)
    state = babi_flow(config, return_state=True)
    outcome = state.result()
    names = {name for name, _ in _task_runs(state) if name.startswith("train")}
    assert names == {"train-babi-1-seed-0", "train-babi-1-seed-0 (1 renamed copies)"}
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    trained_lines = [log for log in logs if "trained:" in log.message]
    assert len(trained_lines) == 2 and len({log.task_run_id for log in trained_lines}) == 2
    trained = sorted((tmp_path / "data" / "models").rglob("babi_task_1.pt"))
    metas = [load_checkpoint(path)[1] for path in trained]
    assert sorted(meta["settings"]["entity_copies"] for meta in metas) == [0, 1]
    renamed = next(meta for meta in metas if meta["settings"]["entity_copies"] == 1)
    assert len(renamed["history"]) == 3
    best = max(metas, key=lambda meta: (meta["best_valid_accuracy"], -meta["best_valid_loss"]))
    kept = outcome["report"]["units"][0]
    assert kept["settings"] == best["settings"]
    assert ("renamed copies" in report_markdown(outcome["report"])) == (kept["settings"]["entity_copies"] > 0)
    assert "weights kept: a moving average of the trained ones (decay 0.99)." in report_markdown(outcome["report"])


def test_a_joint_model_of_the_tasks_competes_with_each_tasks_own_and_can_answer_them_all(
    prefect_api, babi_en, tmp_path, monkeypatch
):
    """`joint="also"`: one more training, of tasks 1 and 4 together; per task, validation keeps the better of the
    task's own model and the joint one, and the report says which. `joint="only"` then reuses that training from
    the cache and registers it for both tasks."""
    from dmn.checkpoint import load_checkpoint
    from dmn.config import ModelConfig
    from dmn.report import report_markdown

    monkeypatch.chdir(tmp_path)  # MLflow writes a SQLite store's artifacts under the working directory
    (tmp_path / "source").symlink_to(babi_en)
    train = TrainConfig(max_epochs=2, patience=2, batch_size=32, select_by="valid_accuracy")
    config = _config(tmp_path, babi_tasks=[1, 4], joint="also", model=ModelConfig(hidden_size=16), train=train)
    state = babi_flow(config, return_state=True)
    names = {name for name, _ in _task_runs(state) if name.startswith("train")}
    assert names == {"train-babi-1-seed-0", "train-babi-4-seed-0", "train-babi-joint-seed-0 (joint)"}
    models = tmp_path / "data" / "models"
    for unit in state.result()["report"]["units"]:
        metas = [load_checkpoint(path)[1] for path in models.rglob(f"babi_task_{unit['unit']}.pt")]
        assert sorted(bool(meta["settings"].get("joint")) for meta in metas) == [False, True]
        best = max(metas, key=lambda meta: (meta["best_valid_accuracy"], -meta["best_valid_loss"]))
        assert unit["settings"] == best["settings"]
    kept_joint = [bool(u["settings"].get("joint")) for u in state.result()["report"]["units"]]
    assert ("joint" in report_markdown(state.result()["report"])) == any(kept_joint)

    state = babi_flow(config.model_copy(update={"joint": "only"}), return_state=True)
    runs = [(name, run_state) for name, run_state in _task_runs(state) if name.startswith("train")]
    assert runs == [("train-babi-joint-seed-0 (joint)", "Cached")]
    outcome = state.result()
    assert [u["settings"]["joint"] for u in outcome["report"]["units"]] == [True, True]
    assert outcome["version"].version == "2"


def test_a_data_root_removed_behind_the_cache_is_written_anew(prefect_api, babi_en, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's local artifacts
    _task_1_source(babi_en, tmp_path)
    config = _config(tmp_path, train=TrainConfig(max_epochs=2, patience=2, batch_size=64, seed=5))
    first = babi_flow(config)["version"]
    shutil.rmtree(tmp_path / "data")  # Prefect's cache still holds the results that point there
    state = babi_flow(config, return_state=True)
    runs = _task_runs(state)
    for step in ("ingest", "tokenise", "train-babi-1-"):
        assert sorted(s for name, s in runs if name.startswith(step)) == ["Cached", "Completed"], runs
    again = state.result()["version"]
    assert (again.version, again.created) == (first.version, False)  # the same training, found in the registry
    assert len(list((tmp_path / "data" / "models").rglob("babi_task_1.pt"))) == 1
