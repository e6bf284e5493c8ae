"""Atomic file writes, shared by checkpoints and model bundles."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

FILE_MODE = 0o644  # checkpoints and bundles are shared between users, like any model file


@contextmanager
def atomic_target(path: Path) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success make it readable and rename it over `path`.

    A crash leaves the previous file intact and no half-written one under the final name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
