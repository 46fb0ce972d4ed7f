"""The machine a figure was measured on, as results files and bench lines name it.

Its own module, apart from dmn/version.py: that one's code is part of every pipeline step's cache key, and
how a report names the machine must not retrain a model.
"""

from __future__ import annotations

import functools
import os
import platform

import torch

from dmn.cpuinfo import cpuinfo_field


@functools.cache
def machine() -> str:
    """This machine, e.g. "vm (AMD EPYC, 2 cores, AVX2, x86_64, Python 3.11.7)": host, CPU model, cores, the
    widest vector instructions torch's CPU kernels use and Python. Machines of one kind differ several-fold in
    speed (seen here: the side-by-side bench 2.8x slower on an AVX2-only machine than on another), so a speed
    figure is read beside these."""
    # Linux names the model in /proc/cpuinfo; platform.processor() there is only the architecture
    model = cpuinfo_field("model name") or platform.processor() or platform.machine()
    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"{platform.node()} ({model}, {os.cpu_count()} cores, {capability}, {platform.machine()}, "
        f"Python {platform.python_version()})"
    )
