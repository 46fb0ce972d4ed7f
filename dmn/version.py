"""The code version recorded with every model: the git commit when run from a checkout, else the package
version; and digests of the code a pipeline step runs, so that step's cache misses when that code changes
and only then (editing the CLI or a report leaves training cached; editing the model does not)."""

from __future__ import annotations

import ast
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


def module_file(module: str, root: Path = PACKAGE_DIR) -> Path | None:
    """The source file of `dmn.x.y` under `root` (the `dmn` folder); None for a name that is no module."""
    parts = module.split(".")[1:]
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(module: str, root: Path = PACKAGE_DIR) -> set[str]:
    """`module` and every `dmn` module it imports, directly or not, read from the source (nothing is run).

    A package's `__init__.py` counts only where it is imported by name (`from dmn.apps import ...`), not
    for being the parent of an imported module: dmn/apps/__init__.py lists the applications, and adding one
    there must not retrain the others (it runs none of their code)."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        path = module_file(name, root)
        if name in seen or path is None:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                pending += [alias.name for alias in node.names if alias.name.startswith("dmn.")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dmn"):
                pending.append(node.module)
                pending += [f"{node.module}.{alias.name}" for alias in node.names]  # `from dmn.x import module`
    return seen


@functools.cache
def code_digest(*modules: str, root: Path = PACKAGE_DIR) -> str:
    """sha256 over the source of `modules` and of every `dmn` module they import (see imported_modules), with the
    C++ sources beside each (a module compiles its folder's: dmn/models/scan.cpp)."""
    digest = hashlib.sha256()
    files = {module_file(m, root) for module in modules for m in imported_modules(module, root)}
    files |= {native for path in set(files) for native in path.parent.glob("*.cpp")}
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode())
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
