"""`s2m archive backup OUT`: one consistent snapshot of everything an archive needs to come back.

A backup folder holds `database/` (SQLite: a copy made with SQLite's online backup API;
PostgreSQL: a `pg_dump` custom-format archive), `data/` laid out like the data dir (the image files
the snapshot's rows point at, the active index build's index and transforms files, the pseudonym
key file) and `manifest.json` with the size and sha256 of every file, written last.

Consistency: the database is copied first, as one snapshot (PostgreSQL: `pg_dump --snapshot` of an
exported REPEATABLE READ snapshot, which the file lists are read from too; SQLite: the list is
read from the copy). Files are then copied from what that snapshot names: image files are
content-addressed and never rewritten, and the file-store lock is held shared throughout, so no
remover (`archive check --remove-orphans`) takes one meanwhile; index build files are immutable
and checked against the checksums their row recorded. Searches and ingests go on during a
backup; what they add after the snapshot is simply not in it. The folder is assembled under a
temporary name and renamed to OUT at the end, so an interrupted backup never looks complete.
`indexing.restore` reads it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, text

from formats.errors import InputError
from indexing.archive import Archive
from indexing.db import current_revision, describe
from indexing.filestore import file_sha256, fsync_written
from indexing.settings import PSEUDONYM_KEY_FILE

MANIFEST = "manifest.json"
FORMAT = "sketch2medi-backup"
FORMAT_VERSION = 1
DATA_FOLDER = "data"
DUMP_FILES = {"sqlite": "database/archive.sqlite3", "postgresql": "database/archive.pgdump"}
CHUNK = 1 << 20
KEY_FROM_FILE, KEY_FROM_ENVIRONMENT, NO_KEY = "file", "environment", "none"


class BackupError(InputError):
    """A backup that cannot be made or used (one sentence; exit 2, nothing changed)."""


@dataclass(frozen=True)
class Snapshot:
    """What the database snapshot names: its schema revision, image files and active build files."""

    revision: str | None
    image_paths: list[str]
    active_build_id: int | None
    build_files: list[tuple[str, str]]  # (data-dir-relative path, sha256 its row recorded)


@dataclass(frozen=True)
class BackupReport:
    out: Path
    images: int
    active_build_id: int | None
    pseudonym_key: str  # KEY_FROM_FILE, KEY_FROM_ENVIRONMENT or NO_KEY
    files: int
    bytes: int


def copy_hashed(source: Path, target: Path) -> dict[str, Any]:
    """Copy `source` to `target` in one read, returning the manifest entry (`sha256`, `bytes`)."""
    digest, size = hashlib.sha256(), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


def libpq_target(url: URL) -> tuple[str, dict[str, str]]:
    """The database as `pg_dump`/`pg_restore` take it: a libpq URL without the password, which goes in
    the environment (PGPASSWORD) instead of the command line, where `ps` would show it."""
    environment = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False), environment


def run_pg_tool(arguments: list[str], environment: dict[str, str], what: str) -> None:
    """Run a PostgreSQL client program; its failure becomes one sentence (its first line of stderr)."""
    try:
        done = subprocess.run(arguments, env=environment, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackupError(f"{arguments[0]} is not installed: install PostgreSQL's client programs "
                          "(Debian: postgresql-client) of the server's major version") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[0] if lines else f'{arguments[0]} exited with {done.returncode}'}")


def _read_snapshot(read: Callable[[str], list[tuple[Any, ...]]]) -> Snapshot:
    """The snapshot's revision and file lists, `read(sql)` returning rows (same SQL on both backends)."""
    revision = read("SELECT version_num FROM alembic_version")
    image_paths = sorted({row[0] for row in read("SELECT stored_path FROM images")})
    builds = read("SELECT id, file_path, checksum, config FROM index_builds WHERE status = 'active'")
    build_id, build_files = None, []
    if builds:
        build_id, file_path, checksum, config = builds[0]
        config = json.loads(config) if isinstance(config, str) else (config or {})
        build_files = [(file_path, checksum)]
        if "transforms_file" in config:
            build_files.append((config["transforms_file"], config["transforms_checksum"]))
    return Snapshot(revision[0][0] if revision else None, image_paths, build_id, build_files)


def _snapshot_sqlite(archive: Archive, dump: Path) -> Snapshot:
    source_path = archive.engine.url.database
    if not source_path:
        raise BackupError("only a file-backed SQLite archive can be backed up")
    source, copy = sqlite3.connect(source_path), sqlite3.connect(dump)
    try:
        source.backup(copy)  # SQLite's online backup API: one consistent copy while writers go on
        return _read_snapshot(lambda sql: copy.execute(sql).fetchall())
    finally:
        source.close()
        copy.close()


def _snapshot_postgres(archive: Archive, dump: Path) -> Snapshot:
    target, environment = libpq_target(archive.engine.url)
    with archive.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            snapshot_id = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            run_pg_tool(["pg_dump", "--format=custom", f"--snapshot={snapshot_id}", f"--file={dump}", f"--dbname={target}"],
                        environment, "pg_dump")
            return _read_snapshot(lambda sql: _rows(connection, sql))


def _rows(connection: Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in connection.execute(text(sql))]


def _check_out(out: Path) -> None:
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise BackupError(f"{out} already exists and is not an empty folder: give a new or empty folder for the backup")


def _key_source(archive: Archive, images: int) -> str:
    settings = archive.settings
    if settings.pseudonym_key:
        return KEY_FROM_ENVIRONMENT
    if settings.pseudonym_key_path.is_file():
        return KEY_FROM_FILE
    if images:
        raise BackupError(f"the archive holds images but its pseudonym key {settings.pseudonym_key_path} is missing, "
                          "so no backup of it could restore their pseudonyms: restore the key file first")
    return NO_KEY


def backup_archive(archive: Archive, out: Path) -> BackupReport:
    """Write a backup of `archive` to `out` (a new or empty folder); see the module's docstring."""
    _check_out(out)
    if current_revision(archive.engine) is None:
        raise BackupError(f"the archive database {describe(archive.engine)} is empty (no schema): there is nothing to back up")
    backend = archive.engine.dialect.name
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    (staging / "database").mkdir(parents=True)
    try:
        with archive.lock.writing():
            dump = staging / DUMP_FILES[backend]
            snapshot = (_snapshot_postgres if backend == "postgresql" else _snapshot_sqlite)(archive, dump)
            files = {DUMP_FILES[backend]: {"sha256": file_sha256(dump), "bytes": dump.stat().st_size}}
            files.update(_copy_data(archive, staging, snapshot))
        key = _key_source(archive, len(snapshot.image_paths))
        if key == KEY_FROM_FILE:
            files[f"{DATA_FOLDER}/{PSEUDONYM_KEY_FILE}"] = copy_hashed(archive.settings.pseudonym_key_path,
                                                                       staging / DATA_FOLDER / PSEUDONYM_KEY_FILE)
            os.chmod(staging / DATA_FOLDER / PSEUDONYM_KEY_FILE, 0o600)
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "created_at": datetime.now(timezone.utc).isoformat(),
            "database": {"backend": backend, "dump": DUMP_FILES[backend], "revision": snapshot.revision},
            "images": len(snapshot.image_paths), "active_build_id": snapshot.active_build_id,
            "pseudonym_key": key, "files": files,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        fsync_written([staging / MANIFEST, *(staging / relative for relative in files)])
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupReport(out, len(snapshot.image_paths), snapshot.active_build_id, key, len(files),
                        sum(entry["bytes"] for entry in files.values()))


def _copy_data(archive: Archive, staging: Path, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """Copy the snapshot's image files and active build files into `staging/data/`."""
    data_dir, copied = archive.settings.data_dir, {}
    for relative in snapshot.image_paths:
        if not (data_dir / relative).is_file():
            raise BackupError(f"the archive's image file {relative} is missing, so a backup would not restore: "
                              "run `s2m archive check` and repair the archive first")
        copied[f"{DATA_FOLDER}/{relative}"] = copy_hashed(data_dir / relative, staging / DATA_FOLDER / relative)
    for relative, checksum in snapshot.build_files:
        source = data_dir / relative
        entry = copy_hashed(source, staging / DATA_FOLDER / relative) if source.is_file() else None
        if entry is None or entry["sha256"] != checksum:
            raise BackupError(f"the active index build {snapshot.active_build_id}'s file {Path(relative).name} is missing "
                              "or differs from its recorded checksum (a refresh replaced it during the backup?): "
                              "run the backup again")
        copied[f"{DATA_FOLDER}/{relative}"] = entry
    return copied
