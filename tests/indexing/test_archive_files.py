"""Stored image files: readable by the service's group, made durable one by one, never by a machine-wide sync."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from indexing.archive import Archive
from indexing.ingest.run import ingest_path


def test_stored_files_are_group_readable_and_fsynced_without_a_machine_wide_sync(
    archive: Archive, tmp_path: Path, make_photo, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(3):
        Image.fromarray(make_photo(n)).save(folder / f"{n}.png")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "sync", lambda: pytest.fail("a machine-wide sync() flushes every program's writes"))
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    assert ingest_path(archive, folder).added == 3
    stored = [archive.files.absolute(p) for p in archive.files.stored_paths()]
    assert len(stored) == 3
    assert {stat.S_IMODE(p.stat().st_mode) for p in stored} == {0o640}
    assert len(synced) >= 6  # each file and the folder of its rename
