"""Content-addressed image files under the data dir: `images/<sha[:2]>/<sha>.png`.

A file is written to a temporary name in its final folder, fsynced and renamed, so a reader never
sees half a file and a name never points at unwritten data; `sync(paths)` then fsyncs the folders
of a batch's renames once each, and the DB rows that point at the files are committed only after
it. (A machine-wide `sync()` per batch was faster on an idle disk but flushed every other
program's writes too: docs/benchmarks.md.) Files are readable by the owner's group (mode 0640),
so a service running as another user of that group can serve them. Removing a file is left to
the callers that hold the file-store lock (`indexing.locks`), never done here on a guess.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

IMAGES_FOLDER = "images"
STORED_SUFFIX = ".png"
SHARD_CHARS = 2
TEMPORARY_PREFIX = ".tmp-"
SYNC_THREADS = 4  # folders fsynced at once: fsyncs in flight together share the journal's commits
FILE_MODE = 0o640  # owner writes, the service's group reads, nobody else


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (index builds and backups record it; a stored image's name is its pixels')."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class FileStore:
    """The image files of an archive, addressed by the sha256 of their pixels."""

    root: Path

    def relative_path(self, sha256: str) -> str:
        """The path stored in the DB (relative to `root`, so the data dir can move)."""
        if len(sha256) != 64 or any(char not in "0123456789abcdef" for char in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return f"{IMAGES_FOLDER}/{sha256[:SHARD_CHARS]}/{sha256}{STORED_SUFFIX}"

    def absolute(self, relative_path: str) -> Path:
        return self.root / relative_path

    def put(self, sha256: str, data: bytes, replace: bool = False) -> tuple[str, bool]:
        """Store `data` under its digest; returns (relative path, whether this call wrote the file).

        An existing file is kept unless `replace` (a repair rewriting a damaged file)."""
        relative = self.relative_path(sha256)
        target = self.absolute(relative)
        if target.exists() and not replace:
            return relative, False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=TEMPORARY_PREFIX, suffix=STORED_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return relative, True

    def sync(self, relative_paths: Iterable[str]) -> None:
        """Make the renames of `relative_paths` durable: one fsync per folder (call before committing
        the rows that point at them; the files' data was fsynced by `put`)."""
        folders = sorted({self.absolute(path).parent for path in relative_paths})
        with ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="s2m-fsync") as pool:
            list(pool.map(_fsync_folder, folders))

    def remove(self, relative_path: str) -> None:
        self.absolute(relative_path).unlink(missing_ok=True)

    def stored_paths(self) -> Iterator[str]:
        """Every stored image file (relative paths), temporary files excluded."""
        folder = self.root / IMAGES_FOLDER
        if not folder.is_dir():
            return
        for path in sorted(folder.glob(f"*/*{STORED_SUFFIX}")):
            if not path.name.startswith(TEMPORARY_PREFIX):
                yield path.relative_to(self.root).as_posix()

    def temporary_paths(self) -> list[str]:
        """Half-written files (`.tmp-*`): a write in flight, or left by a killed process."""
        folder = self.root / IMAGES_FOLDER
        if not folder.is_dir():
            return []
        return sorted(path.relative_to(self.root).as_posix() for path in folder.glob(f"*/{TEMPORARY_PREFIX}*"))


def fsync_written(paths: Iterable[Path]) -> None:
    """Make whole files written in place durable: each file's data, then each of their folders once
    (what a copy job such as a backup or restore needs; never a machine-wide `sync()`)."""
    paths = list(paths)
    for path in paths:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    folders = sorted({path.parent for path in paths})
    with ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="s2m-fsync") as pool:
        list(pool.map(_fsync_folder, folders))


def _fsync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
