"""Ctrl-C and SIGTERM for the `dmn` command: the run stops its trainings (flows/run.py), records its end on the
Prefect server, stops the temporary server, prints one line and ends by the signal, as Python ends on an
uncaught Ctrl-C (a shell script that ran it then stops too, rather than going on to its next command).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.exceptions import TerminationSignal
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL

_pending: list[int] = []  # the signal this process ends by once its exit handlers have run


class ServerInOwnSession(SubprocessASGIServer):
    """Prefect's temporary server, started in a session of its own. Ctrl-C in a terminal signals the whole
    foreground process group: a server in it would stop at once, and the interrupted flow run, unable to record
    its end, would retry for a minute and end in a traceback. This process stops it on its way out (Prefect's
    atexit handler)."""

    def _run_uvicorn_command(self) -> subprocess.Popen:
        # Prefect builds the command and its environment and takes no Popen options: its module's Popen is this
        # call's alone (the server starts once, before any training)
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


@contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """Inside the block, SIGTERM raises Prefect's TerminationSignal, as Ctrl-C raises KeyboardInterrupt, so that
    the caller cleans up and says so (inside a flow run Prefect's own handler does the same, and hands the
    signal back here once the run has crashed). Only the main thread can take signals: elsewhere, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_termination_signal(signal_number, frame):
        raise TerminationSignal(signal=signal_number)

    previous = signal.signal(signal.SIGTERM, raise_termination_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def signal_number(interrupt: BaseException) -> int:
    """The signal of a KeyboardInterrupt (SIGINT) or a TerminationSignal."""
    return getattr(interrupt, "signal", signal.SIGINT)


def end_by_signal_at_exit(number: int) -> None:
    """Once this process's exit handlers have run (the temporary server's stop among them), end it by signal
    `number`."""
    _pending[:] = [number]


@atexit.register  # at import, before the server's stop is registered: exit handlers run last registered first
def _end_by_pending_signal() -> None:
    if _pending:
        signal.signal(_pending[0], signal.SIG_DFL)
        os.kill(os.getpid(), _pending[0])
