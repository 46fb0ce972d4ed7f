"""Shared fixtures. Real components only: bAbI files from the bundled tarball, a real Prefect API
(prefect_test_harness), MLflow on a SQLite file under a temporary folder, an S3 server on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Before prefect, mlflow or datasets are imported: keep every state of theirs inside a temporary folder.
_STATE = Path(tempfile.mkdtemp(prefix="dmn-tests-"))
os.environ.update(
    PREFECT_HOME=str(_STATE / "prefect"),
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_LEVEL="WARNING",
    HF_HOME=str(_STATE / "hf"),
    HF_DATASETS_OFFLINE="1",
    HF_HUB_OFFLINE="1",
    MLFLOW_TRACKING_URI=f"sqlite:///{_STATE / 'mlflow-default.db'}",
    TQDM_DISABLE="1",
    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore",
    # the S3 server of `object_store` takes any credentials; pyarrow and boto3 read them from here
    AWS_ACCESS_KEY_ID="dmn-tests",
    AWS_SECRET_ACCESS_KEY="dmn-tests",
    AWS_DEFAULT_REGION="us-east-1",
)
# pytest-xdist runs a worker per core: a worker's torch (and the trainings it starts in subprocesses) takes
# its share of the cores, not all of them; oversubscribed, OpenMP's threads wait on each other (3-5x slower
# trainings on 2 cores). Set in the workers only: the controller's environment reaches them as it is. A user's
# own OMP_NUM_THREADS wins.
if "PYTEST_XDIST_WORKER" in os.environ:
    workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))

import pytest  # noqa: E402

from dmn.data.sources import BUNDLED_TARBALL, extract_babi  # noqa: E402

# pytest-xdist hands each worker whole files (--dist loadfile), in collection order (--no-loadscope-reorder):
# the longest files first (those that train through real servers; `pytest --durations=0` on a 2-core machine),
# so that no worker is left alone with one at the end while the other has nothing to do
LONGEST_FILES_FIRST = (
    "test_cli.py",
    "test_flow.py",
    "test_train.py",
    "test_operations.py",
    "test_dmn.py",
    "test_cache_keys.py",
    "test_bench.py",
    "test_distributed.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its tests' order


@pytest.fixture(scope="session")
def babi_root(tmp_path_factory) -> Path:
    """The real bAbI v1.2 en (1k) files, extracted from the bundled tarball: `<root>/tasks_1-20_v1-2/en/`."""
    return extract_babi(BUNDLED_TARBALL, tmp_path_factory.mktemp("babi") / "release")


@pytest.fixture(scope="session")
def babi_en(babi_root) -> Path:
    return babi_root / "tasks_1-20_v1-2" / "en"


def python_json(script: str, *args: str, cwd, env=None, stdin: str | None = None, timeout: int = 600):
    """Run `python -c script args...` in a fresh process; the JSON its last line of output prints."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def object_store():
    """An S3-compatible server on 127.0.0.1 (moto's standalone server: MinIO is not in the package
    registries this project installs from) with one bucket; yields (endpoint host:port, bucket)."""
    import pyarrow.fs as pafs

    endpoint = f"127.0.0.1:{free_port()}"
    host, port = endpoint.split(":")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", host, "-p", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        s3 = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True)
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"moto_server exited with {server.returncode}"
            try:
                s3.create_dir("dmn-tests")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield endpoint, "dmn-tests"
    finally:
        server.terminate()
        server.wait(timeout=20)


def s3_uri(object_store, prefix: str) -> str:
    endpoint, bucket = object_store
    return f"s3://{bucket}/{prefix}?endpoint_override={endpoint}&scheme=http"


def s3_filesystem(object_store):
    """pyarrow's S3 filesystem on the test server: to look at or damage the bucket behind the code's back."""
    import pyarrow.fs as pafs

    return pafs.S3FileSystem(endpoint_override=object_store[0], scheme="http")


def bucket_keys(object_store, prefix: str = "") -> list[str]:
    """The keys under `prefix` in the test bucket, relative to it."""
    import pyarrow.fs as pafs

    folder = f"{object_store[1]}/{prefix}".rstrip("/")
    selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
    infos = s3_filesystem(object_store).get_file_info(selector)
    return sorted(info.path.removeprefix(f"{folder}/") for info in infos if info.type == pafs.FileType.File)


@pytest.fixture(scope="session")
def prefect_api():
    """One real temporary Prefect server for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def flow_config(tmp: Path, **overrides):
    """A small but real configuration: bAbI task 1 from `tmp/source`, everything written under `tmp`."""
    from dmn.apps.babi import BabiRunConfig
    from dmn.config import ModelConfig, TrainConfig

    values = dict(
        babi_tasks=[1],
        source=str(tmp / "source"),
        data_root=str(tmp / "data"),
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        model=ModelConfig(hidden_size=32),
        train=TrainConfig(max_epochs=15, patience=15, batch_size=32, seed=3),
        entity_copies=[0],  # one model per task (tests/test_flow.py trains the default's two variants)
        joint="no",  # and no joint model of several tasks (tests/test_flow.py trains one)
    )
    values.update(overrides)
    return BabiRunConfig(**values)


@pytest.fixture(scope="session")
def trained(prefect_api, babi_en, tmp_path_factory):
    """One flow run on bAbI task 1 in a fresh folder (MLflow's artifacts land in the working directory)."""
    tmp = tmp_path_factory.mktemp("flow")
    (tmp / "source").symlink_to(babi_en)
    from flows.babi import babi_flow

    config = flow_config(tmp)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        state = babi_flow(config, return_state=True)
    finally:
        os.chdir(cwd)
    return tmp, config, state
