"""Ctrl-C and SIGTERM for the `dmn` command: the run stops its trainings and keeps its temporary Prefect server
out of a terminal's Ctrl-C (flows/run.py), records its end on the Prefect server, stops the temporary server,
prints one line and ends by the signal, as Python ends on an uncaught Ctrl-C (a shell script that ran it then
stops too, rather than going on to its next command).
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.exceptions import TerminationSignal

_pending: list[int] = []  # the signal this process ends by once its exit handlers have run


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


def end_by_signal_at_exit(number: int) -> None:
    """Once this process's exit handlers have run (the temporary server's stop among them), end it by signal
    `number`."""
    _pending[:] = [number]


@atexit.register  # at import, before the server's stop is registered: exit handlers run last registered first
def _end_by_pending_signal() -> None:
    if _pending:
        signal.signal(_pending[0], signal.SIG_DFL)
        os.kill(os.getpid(), _pending[0])
