"""Operations end to end against real servers started here: `prefect server start` and `mlflow server` on
127.0.0.1 (SQLite), the deployments of prefect.yaml, a process worker, a retrain run created through the
API call of the UI's Run button, and the champion answering over HTTP from `mlflow models serve`.

As a team runs it: the data root and MLflow's artifact root are in an object store (S3 on 127.0.0.1), so
the worker, the tracking server and the scoring server share nothing but the servers."""

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import bucket_keys, free_port, s3_uri

ROOT = Path(__file__).resolve().parents[1]
PLACES = ["kitchen", "garden", "office", "hallway", "bathroom", "bedroom"]
BIN = Path(sys.executable).parent


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def servers(tmp_path_factory, object_store):
    tmp = tmp_path_factory.mktemp("ops")
    prefect_port, mlflow_port = free_port(), free_port()
    env = dict(
        os.environ,
        PATH=f"{BIN}:{os.environ['PATH']}",
        PREFECT_HOME=str(tmp / "prefect-home"),
        PREFECT_API_URL=f"http://127.0.0.1:{prefect_port}/api",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp / 'prefect.db'}",
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mlflow_port}",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_S3_ENDPOINT_URL=f"http://{object_store[0]}",  # the tracking server writes artifacts there
        PREFECT_WORKER_QUERY_SECONDS="1",  # the worker picks a new run up within a second (default: 10)
    )
    processes = []

    def start(*command, **kwargs):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
        processes.append(process)
        return process

    prefect = start(str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port))
    mlflow = start(
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp / 'mlflow.db'}",
        "--artifacts-destination",
        f"s3://{object_store[1]}/mlflow-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(mlflow_port),
        "--workers",
        "1",
    )
    try:
        _wait_http(f"http://127.0.0.1:{prefect_port}/api/health", prefect)
        _wait_http(f"http://127.0.0.1:{mlflow_port}/health", mlflow)
        yield tmp, env, start
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _run(env, *command, timeout=300):
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_retrain_deployment_run_from_the_api_registers_and_promotes(servers, babi_root, object_store):
    tmp, env, start = servers
    data_root = s3_uri(object_store, "ops-data")
    _run(env, str(BIN / "prefect"), "work-pool", "create", "dmn-local", "--type", "process")
    _run(env, str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
    start(str(BIN / "prefect"), "worker", "start", "--pool", "dmn-local", cwd=ROOT)
    parameters = {
        "config": {
            "babi_tasks": [1],
            "source": str(babi_root),
            "data_root": data_root,
            "model": {"hidden_size": 16},
            "train": {"max_epochs": 2, "batch_size": 64},
        },
        "gate": {"first_max_error": 0.9},  # two epochs of a tiny model: a low bar, set in the run's form
    }
    script = textwrap.dedent(
        f"""
        from prefect.deployments import run_deployment
        run = run_deployment("dmn-retrain/retrain", parameters={parameters!r}, timeout=600, poll_interval=1)
        print(run.state.name)
        """
    )
    assert _run(env, sys.executable, "-c", script, timeout=660).strip().splitlines()[-1] == "Completed"
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("dmn-babi", "champion")
    assert str(champion.version) == "1"
    assert str(client.get_model_version_by_alias("dmn-babi", "challenger").version) == "1"
    decisions = [json.loads(v) for k, v in champion.tags.items() if k.startswith("dmn.decision.")]
    assert [d["action"] for d in decisions] == ["promote"] and "first champion's bar" in decisions[0]["reason"]
    evaluation = {"config": {"source": str(babi_root), "data_root": data_root}}  # the champion, by default
    script = textwrap.dedent(
        f"""
        from prefect.deployments import run_deployment
        run = run_deployment("dmn-evaluate/evaluate", parameters={evaluation!r}, timeout=600, poll_interval=1)
        print(run.state.name)
        """
    )
    assert _run(env, sys.executable, "-c", script, timeout=660).strip().splitlines()[-1] == "Completed"
    assert "last_evaluation_run" in client.get_model_version("dmn-babi", "1").tags
    stored = bucket_keys(object_store)
    for prefix in ("ops-data/raw/", "ops-data/tokens/", "ops-data/models/", "mlflow-artifacts/"):
        assert any(key.startswith(prefix) for key in stored), (prefix, sorted(stored)[:20])
    assert any(key.startswith("mlflow-artifacts/") and key.endswith("/babi_task_1.pt") for key in stored)
    assert not any(key.endswith(".progress.pt") for key in stored)  # removed once training ended
    assert not (tmp / "data").exists() and not (ROOT / "ops-data").exists()
    schedules = _run(env, str(BIN / "prefect"), "deployment", "inspect", "dmn-retrain/retrain")
    assert "0 3 * * 1" in schedules and "'active': False" in schedules
    bad = subprocess.run(
        [sys.executable, "-m", "flows.cli", "schedule", "dmn-retrain/retrain", "--cron", "every monday"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--cron 'every monday'" in bad.stderr and "is not a cron schedule" in bad.stderr
    unchanged = _run(env, str(BIN / "prefect"), "deployment", "inspect", "dmn-retrain/retrain")
    assert "0 3 * * 1" in unchanged and "'active': False" in unchanged
    _run(env, sys.executable, "-m", "flows.cli", "schedule", "dmn-retrain/retrain", "--cron", "30 2 * * *")
    changed = _run(env, str(BIN / "prefect"), "deployment", "inspect", "dmn-retrain/retrain")
    assert "30 2 * * *" in changed and "'active': True" in changed


def test_champion_answers_over_http_from_mlflow_models_serve(servers):
    tmp, env, start = servers
    port = free_port()
    server = start(
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/dmn-babi@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    )
    _wait_http(f"http://127.0.0.1:{port}/ping", server, timeout=180)
    story = "Mary went to the kitchen.\nJohn moved to the garden."
    body = json.dumps({"dataframe_split": {"columns": ["story", "question"], "data": [[story, "Where is Mary?"]]}})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        predictions = json.loads(response.read())["predictions"]
    script = (
        "import json, sys, mlflow, pandas; m = mlflow.pyfunc.load_model('models:/dmn-babi@champion'); "
        "print(json.dumps(list(m.predict(pandas.DataFrame({'story': [sys.argv[1]], 'question': ['Where is Mary?']})))))"
    )
    assert predictions == json.loads(_run(env, sys.executable, "-c", script, story).strip().splitlines()[-1])
    assert len(predictions) == 1 and isinstance(predictions[0], str)

    def invoke(payload: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    rows = [[f"Mary went to the {place}.\nJohn moved to the garden.", "Where is Mary?"] for place in PLACES * 10]
    batch = {"dataframe_split": {"columns": ["story", "question"], "data": rows}}
    status, answered = invoke({**batch, "params": {"details": True}})
    assert status == 200 and len(answered["predictions"]) == len(rows)
    first = answered["predictions"][0]
    assert set(first) == {"answer", "probability", "babi_task", "unknown_words", "facts"} and first["facts"] == 2
    alone = [invoke({"dataframe_split": {"columns": ["story", "question"], "data": [row]}})[1] for row in rows[:6]]
    assert [a["predictions"][0] for a in alone] == [p["answer"] for p in answered["predictions"][:6]]
    status, refused = invoke({"dataframe_split": {"columns": ["story", "question"], "data": [[story, None]]}})
    assert status == 400 and "row 0: question: empty (null)" in refused["message"]
    assert "Traceback" not in json.dumps(refused) and "stack_trace" not in refused
