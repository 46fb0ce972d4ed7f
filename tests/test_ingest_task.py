"""Ingest from a URL served on 127.0.0.1, and the Prefect task's retries: transient failures only."""

import collections
import functools
import http.server
import threading

import pytest

from dmn.apps.babi import BabiRunConfig
from dmn.data.sources import BUNDLED_TARBALL, TransientSourceError, ingest_babi, sha256_file
from dmn.errors import DataError
from tasks.steps import ingest

REQUESTS: collections.Counter = collections.Counter()


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files, counts requests per path, and answers /busy with 503 (a transient failure)."""

    def do_GET(self):
        REQUESTS[self.path] += 1
        if self.path == "/busy":
            self.send_error(503)
        else:
            super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    """A real HTTP server on 127.0.0.1 serving a folder holding the bundled tarball."""
    root = tmp_path_factory.mktemp("www")
    (root / "tasks_1-20_v1-2.tar.xz").write_bytes(BUNDLED_TARBALL.read_bytes())
    handler = functools.partial(Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_source_is_downloaded_and_checked(http_root, tmp_path):
    url = f"{http_root}/tasks_1-20_v1-2.tar.xz"
    raw = ingest_babi(url, "1k", tmp_path, sha256=sha256_file(BUNDLED_TARBALL))
    assert raw.digest == ingest_babi("bundled", "1k", tmp_path / "bundled").digest
    with pytest.raises(DataError, match="sha256 is"):
        ingest_babi(url, "1k", tmp_path / "wrong", sha256="ab" * 32)


def test_missing_url_is_bad_input_and_refused_port_is_transient(http_root, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        ingest_babi(f"{http_root}/nothing.tar.gz", "1k", tmp_path)
    with pytest.raises(TransientSourceError):
        ingest_babi("http://127.0.0.1:9/tasks.tar.gz", "1k", tmp_path)


def test_ingest_task_retries_a_transient_failure_but_not_bad_data(prefect_api, http_root, tmp_path):
    quick = ingest.with_options(retry_delay_seconds=0, cache_policy=None)
    transient = quick("babi", BabiRunConfig(source=f"{http_root}/busy"), str(tmp_path), return_state=True)
    assert transient.is_failed() and REQUESTS["/busy"] == 4  # the first try and 3 retries
    bad = quick("babi", BabiRunConfig(source=f"{http_root}/missing.tar.gz"), str(tmp_path), return_state=True)
    assert bad.is_failed() and REQUESTS["/missing.tar.gz"] == 1
    with pytest.raises(DataError, match="HTTP 404"):
        bad.result()


def test_a_source_of_unknown_content_is_fetched_by_every_run(prefect_api, http_root, tmp_path):
    """A URL without sha256: its content is unknown until fetched, so no run reuses another's ingest (a cache
    key on the task's code alone would hand a later URL the first one's files)."""
    path = "/tasks_1-20_v1-2.tar.xz"
    before = REQUESTS[path]
    config = BabiRunConfig(source=f"{http_root}{path}")
    states = [ingest("babi", config, str(tmp_path), return_state=True) for _ in range(2)]
    assert [state.name for state in states] == ["Completed", "Completed"]
    assert REQUESTS[path] - before == 2
