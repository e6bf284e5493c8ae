"""`s2m archive backup` / `restore` through the real CLI, database (SQLite and PostgreSQL, pg_dump and
pg_restore) and file store: what comes back, and what is refused with nothing changed.
The drill under load with an index build and a search is tests/api/test_operations.py."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import inspect
from typer.testing import CliRunner

from api.cli import app
from indexing.archive import Archive
from indexing.db import downgrade, make_engine
from indexing.settings import Settings
from tests.indexing.conftest import empty_target


def _s2m(settings: Settings, *args: str):  # type: ignore[no-untyped-def]
    env = {"S2M_DATABASE_URL": settings.database_url, "S2M_DATA_DIR": str(settings.data_dir),
           "S2M_PSEUDONYM_KEY": settings.pseudonym_key.decode() if settings.pseudonym_key else None}
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def keyed_archive(settings: Settings, tmp_path: Path) -> Iterator[Archive]:
    """An archive whose pseudonym key is the data dir's file (no S2M_PSEUDONYM_KEY), 3 images, one deleted."""
    settings = replace(settings, pseudonym_key=None)
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(3):
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"p{seed}.png")
    archive = Archive.create(settings)
    assert _s2m(settings, "archive", "ingest", str(folder), "--no-progress").exit_code == 0
    assert _s2m(settings, "archive", "delete", "2").exit_code == 0
    yield archive
    archive.close()


def _tree(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_backup_restores_rows_files_and_the_key_file_into_an_empty_data_dir(keyed_archive: Archive, tmp_path: Path) -> None:
    source = keyed_archive.settings
    backed = _s2m(source, "archive", "backup", str(tmp_path / "backup"))
    assert backed.exit_code == 0, backed.output
    assert "backed up 3 images" in backed.output  # the deleted row's file too: its row is in the snapshot
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["pseudonym_key"] == "file" and manifest["images"] == 3
    key_copy = tmp_path / "backup" / "data" / "pseudonym.key"
    assert key_copy.read_bytes() == source.pseudonym_key_path.read_bytes() and key_copy.stat().st_mode & 0o077 == 0
    assert not list(tmp_path.glob(".backup.partial-*"))

    with empty_target(source, tmp_path / "elsewhere") as target:
        restored = _s2m(target, "archive", "restore", str(tmp_path / "backup"))
        assert restored.exit_code == 0, restored.output
        checked = _s2m(target, "archive", "check")
        assert checked.exit_code == 0 and "archive consistent" in checked.output
        assert _s2m(target, "archive", "stats").output == _s2m(source, "archive", "stats").output
        assert _s2m(target, "archive", "list", "--include-deleted").output == _s2m(source, "archive", "list", "--include-deleted").output
        assert target.pseudonym_key_path.read_bytes() == source.pseudonym_key_path.read_bytes()
        assert target.pseudonym_key_path.stat().st_mode & 0o077 == 0
        source_images = _tree(source.data_dir / "images")
        assert _tree(target.data_dir / "images") == source_images and len(source_images) == 3
        more = tmp_path / "more"
        more.mkdir()
        Image.fromarray(np.random.default_rng(9).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(more / "p9.png")
        added = _s2m(target, "archive", "ingest", str(more), "--no-progress")  # the key came back; new ids do not collide
        assert added.exit_code == 0 and "added 1 images" in added.output, added.output
        assert "images: 3 (+1 deleted)" in _s2m(target, "archive", "stats").output


def _refused(result, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    assert all(word in lines[0] for word in words), lines[0]


def test_restore_refuses_a_used_target_and_a_damaged_backup_changing_nothing(keyed_archive: Archive, tmp_path: Path) -> None:
    source = keyed_archive.settings
    backup = tmp_path / "backup"
    assert _s2m(source, "archive", "backup", str(backup)).exit_code == 0
    _refused(_s2m(source, "archive", "backup", str(backup)), "not an empty folder")

    before = _tree(source.data_dir)
    _refused(_s2m(source, "archive", "restore", str(backup)), "not empty")  # onto the live archive itself
    assert _tree(source.data_dir) == before

    with empty_target(source, tmp_path / "elsewhere") as target:
        if target.database_url.startswith("postgresql"):
            used = replace(target, database_url=source.database_url)  # empty data dir, but a database with tables
            _refused(_s2m(used, "archive", "restore", str(backup)), "not empty", "new, empty database")
            assert not target.data_dir.exists()

        _refused(_s2m(target, "archive", "restore", str(tmp_path)), "not a Sketch2MedI backup")
        damaged = tmp_path / "damaged"
        shutil.copytree(backup, damaged)
        image = next((damaged / "data" / "images").rglob("*.png"))
        image.write_bytes(image.read_bytes()[:-1] + bytes([image.read_bytes()[-1] ^ 1]))
        _refused(_s2m(target, "archive", "restore", str(damaged)), "incomplete or corrupt", "differs from its sha256")
        manifest = json.loads((damaged / "manifest.json").read_text())
        (damaged / manifest["database"]["dump"]).unlink()
        _refused(_s2m(target, "archive", "restore", str(damaged)), "incomplete or corrupt", "missing")
        assert not target.data_dir.exists()
        if target.database_url.startswith("postgresql"):
            engine = make_engine(target.database_url)
            assert inspect(engine).get_table_names() == []
            engine.dispose()

        without_key = replace(target, pseudonym_key=None)
        manifest = json.loads((backup / "manifest.json").read_text())
        assert manifest["pseudonym_key"] == "file"
        restored = _s2m(without_key, "archive", "restore", str(backup))
        assert restored.exit_code == 0, restored.output
        _refused(_s2m(without_key, "archive", "restore", str(backup)), "not empty")


def test_a_backup_before_a_schema_upgrade_restores_and_then_upgrades(keyed_archive: Archive, tmp_path: Path) -> None:
    source = keyed_archive.settings
    downgrade(keyed_archive.engine, "0004")  # the archive as the previous version left it
    assert _s2m(source, "archive", "stats").exit_code == 2  # the other commands want `s2m db upgrade` first
    backed = _s2m(source, "archive", "backup", str(tmp_path / "backup"))
    assert backed.exit_code == 0, backed.output
    assert json.loads((tmp_path / "backup" / "manifest.json").read_text())["database"]["revision"] == "0004"
    with empty_target(source, tmp_path / "elsewhere") as target:
        assert _s2m(target, "archive", "restore", str(tmp_path / "backup")).exit_code == 0
        assert _s2m(target, "db", "upgrade").exit_code == 0
        checked = _s2m(target, "archive", "check")
        assert checked.exit_code == 0 and "archive consistent" in checked.output
        assert "images: 2 (+1 deleted)" in _s2m(target, "archive", "stats").output
