"""Shared fixtures. Real components only: bAbI files from the bundled tarball, a real Prefect API
(prefect_test_harness), MLflow on a SQLite file under a temporary folder."""

import os
import tempfile
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
)

import pytest  # noqa: E402

from dmn.data.sources import BUNDLED_TARBALL, extract_tarball  # noqa: E402


@pytest.fixture(scope="session")
def babi_root(tmp_path_factory) -> Path:
    """The real bAbI v1.2 en (1k) files, extracted from the bundled tarball: `<root>/tasks_1-20_v1-2/en/`."""
    return extract_tarball(BUNDLED_TARBALL, tmp_path_factory.mktemp("babi") / "release")


@pytest.fixture(scope="session")
def babi_en(babi_root) -> Path:
    return babi_root / "tasks_1-20_v1-2" / "en"


@pytest.fixture(scope="session")
def prefect_api():
    """One real temporary Prefect server for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
