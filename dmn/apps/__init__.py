"""The applications of the DMN, one module each: `application(name)` imports the one asked for.

Names map to module paths (strings, not imports) so that a step's code digest (dmn/version.py) covers its own
application's module and never another's.
"""

from __future__ import annotations

import importlib

from dmn.errors import ConfigError

APPLICATIONS = {"babi": "dmn.apps.babi", "sst": "dmn.apps.sst", "pos": "dmn.apps.pos", "vqa": "dmn.apps.vqa"}


def application(name: str):
    """The `Application` called `name`; ConfigError naming the known ones otherwise."""
    if name not in APPLICATIONS:
        raise ConfigError(f"unknown application {name!r}; known: {', '.join(sorted(APPLICATIONS))}")
    return importlib.import_module(APPLICATIONS[name]).APPLICATION
