"""Where a figure came from: the machine, the code's commit and the command line that reruns it.

The evaluation report and `s2m bench` both head their numbers with these.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click


def machine() -> dict[str, Any]:
    """The CPU model, its core count and the software the numbers came from."""
    import numpy
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable,
            "threads": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__}


def command_line(ctx: "click.Context", words: str) -> str:
    """`s2m <words>` with every option spelled out (defaults included), so that it reruns as it ran."""
    parts = ["s2m", *words.split()]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or param.param_type_name != "option":
            continue
        if getattr(param, "is_flag", False):
            parts.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            parts += [param.opts[0], shlex.quote(str(value))]
    return " ".join(parts)


def git_commit() -> str | None:
    """The short commit of the code that made the numbers (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
