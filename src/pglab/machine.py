"""What a run ran on, in words: the CPU model and cores, the torch build, Python.

``summary.json`` records it (``machine``) so that a table made from runs later, on
another computer, names the machine that measured them. A leaf module.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """This machine's CPU model and core count (``AMD EPYC, 2 cores``), from ``/proc/cpuinfo``
    where there is one."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def machine_info() -> dict[str, str]:
    """``{"cpu": ..., "torch": ..., "python": ...}`` of this process (torch with its build, ``2.13.0+cpu``)."""
    import torch

    return {"cpu": cpu_name(), "torch": torch.__version__, "python": platform.python_version()}
