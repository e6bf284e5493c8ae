"""Helpers of the fault tests: real `s2m` processes, what "nothing changed" compares, a decompression bomb."""

from __future__ import annotations

import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from indexing.archive import Archive


REPO_ROOT = Path(__file__).resolve().parents[2]


def archive_env(archive: Archive, **extra: str) -> dict[str, str]:
    """The environment a real `s2m` process needs to open `archive`."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),  # this worktree's code, not an installed copy
        "OMP_NUM_THREADS": "1",
        "S2M_DATABASE_URL": archive.settings.database_url,
        "S2M_DATA_DIR": str(archive.settings.data_dir),
        "S2M_INGEST_BATCH_SIZE": str(archive.settings.ingest_batch_size),
    }
    if archive.settings.pseudonym_key:
        env["S2M_PSEUDONYM_KEY"] = archive.settings.pseudonym_key.decode()
    env.update(extra)
    return env


def s2m_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from api.cli import app; app()", *args]


@dataclass(frozen=True)
class Snapshot:
    """Row counts of every table and every file under the data dir (path, size): what 'nothing changed' compares."""

    rows: dict[str, int]
    files: dict[str, int]


def take_snapshot(archive: Archive) -> Snapshot:
    from sqlalchemy import func, select

    from indexing.db import make_engine
    from indexing.models import Base

    engine = make_engine(archive.settings.database_url, read_only=True)
    try:
        with engine.connect() as connection:
            rows = {t.name: connection.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}
    finally:
        engine.dispose()
    root = archive.settings.data_dir
    files = {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in (root.rglob("*") if root.is_dir() else [])
        if p.is_file() and not p.name.startswith("archive.sqlite3") and p.name not in (".files.lock", ".index.lock")
    }
    return Snapshot(rows, files)


def one_line_error(output: str) -> str:
    """The single `error: ...` line of a command's output; fails on a traceback or several lines."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def png_claiming(path: Path, width: int, height: int, idat_bytes: int = 64) -> Path:
    """A small PNG whose header claims width x height pixels (its data `idat_bytes` zeros, compressed):
    a decompression bomb's signature."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * idat_bytes))
                     + chunk(b"IEND", b""))
    return path
