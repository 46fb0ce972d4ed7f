"""Typed errors that name the cause: the file and line, or the parameter."""

from __future__ import annotations

from pathlib import Path


def display(location: str | Path) -> str:
    """A file or URI as messages name it: without a URI's query string (options, possibly credentials)."""
    return str(location).split("?")[0] if "://" in str(location) else str(location)


class DMNError(Exception):
    """Base of the errors this package raises for bad input (the CLI turns them into exit code 2)."""


class DataError(DMNError, ValueError):
    """Bad input data, located at `path` (and `line` when known)."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None):
        self.path, self.line, self.reason = display(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class ConfigError(DMNError, ValueError):
    """A bad parameter, named in the message."""
