"""One field of Linux's /proc/cpuinfo ("model name", "vendor_id"), for dmn/machine.py (how results name the
machine) and dmn/models/recurrence.py (which tanh is faster here). A module of its own: recurrence's code is
part of the training step's cache key, machine's must not be."""

from __future__ import annotations


def cpuinfo_field(name: str) -> str | None:
    """The first value of field `name` in /proc/cpuinfo; None where the file or the field is missing."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.split(":")[0].strip() == name), None)
    except OSError:
        return None
