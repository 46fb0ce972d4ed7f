"""The code version recorded with every model: the git commit when run from a checkout, else the package
version; and a digest of the package's source, so caches miss when the model code changes."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

from dmn import __version__

PACKAGE_DIR = Path(__file__).resolve().parent


@functools.cache
def code_version() -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "status", "--porcelain", "--", "."], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"dmn-pipeline {__version__}"
    return f"git {commit}{' (modified)' if dirty else ''}"


@functools.cache
def code_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def digest_of(*parts: object) -> str:
    """sha256 over the parts' string forms (configs as their JSON dumps)."""
    digest = hashlib.sha256()
    for part in parts:
        text = part.model_dump_json() if hasattr(part, "model_dump_json") else str(part)
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()
