"""`s2m archive check`: are rows and files whole, and what can be put right.

Removal follows the file-store lock's rule (`indexing.locks`): a file is removed only under the
exclusive lock and only when no committed row points at it, so neither a failed batch nor the
orphan sweep can take a file that another process's committed row needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PilImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from indexing import store
from indexing.archive import Archive
from indexing.filestore import FileStore
from indexing.ingest.decode import SkipFile, encode_png, pixel_digest
from indexing.locks import FileStoreLock
from indexing.models import Image


@dataclass(frozen=True)
class CheckReport:
    """What `check` found; all empty in a healthy archive."""

    orphan_files: list[str]  # a file no row points at
    missing_files: list[str]  # a row whose file is gone
    damaged_files: list[str]  # a row whose file no longer holds the pixels of its sha256
    temporary_files: list[str]  # `.tmp-*` half-written files

    @property
    def ok(self) -> bool:
        return not (self.orphan_files or self.missing_files or self.damaged_files or self.temporary_files)


@dataclass(frozen=True)
class RepairReport:
    restored: list[str]  # files rewritten from the source
    still_missing: list[str]  # rows whose pixels were not found in the source


def stored_digest(path: Path) -> str | None:
    """The pixel sha256 of a stored PNG, or None when it cannot be decoded (truncated, overwritten)."""
    try:
        with PilImage.open(path) as image:
            image.load()
            return pixel_digest(np.asarray(image.convert("RGB")))
    except (OSError, SyntaxError, ValueError, SkipFile):
        return None


def check_archive(archive: Archive) -> CheckReport:
    """Compare rows with files and each file's pixels with its row's sha256 (reads only)."""
    with archive.sessions() as session:
        paths = store.consistency(session, archive.files)
        rows = [tuple(row) for row in session.execute(select(Image.sha256, Image.stored_path))]
    missing = set(paths.missing_files)
    damaged = sorted(
        relative
        for sha256, relative in rows
        if relative not in missing and stored_digest(archive.files.absolute(relative)) != sha256
    )
    return CheckReport(paths.orphan_files, paths.missing_files, damaged, archive.files.temporary_paths())


def remove_unreferenced(
    sessions: sessionmaker[Session], files: FileStore, lock: FileStoreLock, candidates: Sequence[str]
) -> list[str]:
    """Remove those of `candidates` that no committed row points at; returns what was removed."""
    if not candidates:
        return []
    with lock.removing():
        with sessions() as session:
            referenced = store.referenced_paths(session, candidates)
        removed = [path for path in candidates if path not in referenced]
        for path in removed:
            files.remove(path)
    return removed


def remove_orphans(archive: Archive) -> list[str]:
    """Remove every file without a row and every `.tmp-*` file (no write is in flight under the lock)."""
    with archive.lock.removing():
        with archive.sessions() as session:
            orphans = store.consistency(session, archive.files).orphan_files
            referenced = store.referenced_paths(session, orphans)
        removed = [path for path in orphans if path not in referenced] + archive.files.temporary_paths()
        for path in removed:
            archive.files.remove(path)
    return removed


def repair(archive: Archive, source: Path) -> RepairReport:
    """Rewrite missing or damaged files from `source` (a folder or file of the original images),
    matched by the sha256 of their pixels, so no source path needs to be kept in the database."""
    from indexing.ingest.sources import discover

    report = check_archive(archive)
    wanted = set(report.missing_files) | set(report.damaged_files)
    if not wanted:
        return RepairReport([], [])
    with archive.sessions() as session:
        by_sha = {
            sha256: relative
            for sha256, relative in session.execute(select(Image.sha256, Image.stored_path))
            if relative in wanted
        }
    settings = archive.settings
    restored: list[str] = []
    for item in discover(source, settings.max_image_pixels, settings.max_file_bytes).items:
        try:
            pixels = item.load().pixels
        except SkipFile:
            continue
        sha256 = pixel_digest(pixels)
        relative = by_sha.pop(sha256, None)
        if relative is None:
            continue
        with archive.lock.writing():
            archive.files.put(sha256, encode_png(pixels), replace=True)
            archive.files.sync([relative])
        restored.append(relative)
        if not by_sha:
            break
    return RepairReport(sorted(restored), sorted(by_sha.values()))
