"""`s2m archive restore IN`: a backup (`indexing.backup`) back into an empty data dir and database.

Everything is checked before anything is written: the manifest is read, every file it lists is
there with its size and sha256 (an incomplete or corrupt backup is refused), the target is of the
backup's backend, the data dir is new or empty and so is the database (PostgreSQL: a database
with no tables; SQLite: no database file yet). A refusal is one sentence and changes nothing.
Files go into the data dir first, the database last (PostgreSQL: `pg_restore --single-transaction`,
all or nothing); if a write fails, what the restore wrote is removed again.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from indexing.backup import (
    DATA_FOLDER,
    DUMP_FILES,
    FORMAT,
    FORMAT_VERSION,
    KEY_FROM_ENVIRONMENT,
    MANIFEST,
    BackupError,
    copy_hashed,
    libpq_target,
    run_pg_tool,
)
from indexing.db import describe, make_engine, unreachable
from indexing.filestore import file_sha256, fsync_written
from indexing.settings import PSEUDONYM_KEY_FILE, Settings

SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class RestoreReport:
    data_dir: Path
    images: int
    active_build_id: int | None
    pseudonym_key: str
    revision: str | None


def read_manifest(source: Path) -> dict[str, Any]:
    """The backup's manifest, refused unless it is one this version can restore."""
    path = source / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{source} is not a Sketch2MedI backup: it has no {MANIFEST}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise BackupError(f"the backup's {MANIFEST} in {source} cannot be read (damaged): use another backup") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise BackupError(f"{source} is not a Sketch2MedI backup: its {MANIFEST} is of another kind")
    if manifest.get("version") != FORMAT_VERSION:
        raise BackupError(f"the backup in {source} is of format version {manifest.get('version')}, "
                          f"this version of Sketch2MedI restores version {FORMAT_VERSION}")
    return manifest


def _safe(relative: str) -> bool:
    parts = PurePosixPath(relative).parts
    return bool(parts) and not PurePosixPath(relative).is_absolute() and ".." not in parts


def verify_backup(source: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is there, whole; the database dump is among them."""
    files: dict[str, Any] = manifest["files"]
    database = manifest.get("database") or {}
    required = [database.get("dump")]
    if manifest.get("pseudonym_key") == "file":
        required.append(f"{DATA_FOLDER}/{PSEUDONYM_KEY_FILE}")
    problems = [f"{name} (not listed)" for name in required if name not in files]
    for relative, entry in sorted(files.items()):
        path = source / relative
        if not _safe(relative) or not (relative == database.get("dump") or relative.startswith(f"{DATA_FOLDER}/")):
            problems.append(f"{relative} (a path outside the backup's layout)")
        elif not path.is_file():
            problems.append(f"{relative} (missing)")
        elif path.stat().st_size != entry.get("bytes") or file_sha256(path) != entry.get("sha256"):
            problems.append(f"{relative} (differs from its sha256)")
    if problems:
        shown = ", ".join(problems[:SHOWN_PROBLEMS]) + (f" and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else "")
        raise BackupError(f"the backup in {source} is incomplete or corrupt: {shown}; nothing was restored")


def _sqlite_file(url: str) -> Path:
    return Path(make_url(url).database or "")


def _check_target(settings: Settings, manifest: dict[str, Any]) -> None:
    """The target is of the backup's backend and empty; the pseudonym key will be there. Creates nothing."""
    backend, target = manifest["database"].get("backend"), make_url(settings.database_url).get_backend_name()
    if backend not in DUMP_FILES:
        raise BackupError(f"the backup names an unknown database backend {backend!r}")
    if target != backend:
        raise BackupError(f"this backup is of a {backend} archive but S2M_DATABASE_URL names a {target} database: "
                          f"restore it into a {backend} database")
    data_dir = settings.data_dir
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"the data dir {data_dir} is not empty: restore only into a new or empty data dir (set S2M_DATA_DIR to one)")
    if manifest.get("pseudonym_key") == KEY_FROM_ENVIRONMENT and not settings.pseudonym_key:
        raise BackupError("the backed-up archive took its pseudonym key from S2M_PSEUDONYM_KEY, which is not set here: "
                          "set it to that same key, then restore")
    if backend == "sqlite":
        if _sqlite_file(settings.database_url).exists():
            raise BackupError(f"the archive database {_sqlite_file(settings.database_url)} already exists: restore only into a new one")
        return
    engine = make_engine(settings.database_url)
    try:
        tables = inspect(engine).get_table_names()
    except OperationalError as error:
        raise unreachable(engine, error) from None
    finally:
        engine.dispose()
    if tables:
        raise BackupError(f"the database {describe(engine)} is not empty (it has {len(tables)} tables): "
                          "restore into a new, empty database")


def restore_archive(settings: Settings, source: Path) -> RestoreReport:
    """Restore the backup in `source` into the (empty) data dir and database of `settings`."""
    if not source.is_dir():
        raise BackupError(f"{source} is not a folder holding a Sketch2MedI backup")
    manifest = read_manifest(source)
    verify_backup(source, manifest)
    _check_target(settings, manifest)
    data_dir = settings.data_dir
    created = not data_dir.exists()
    try:
        written = []
        for relative in sorted(manifest["files"]):
            if relative.startswith(f"{DATA_FOLDER}/"):
                target = data_dir / relative.removeprefix(f"{DATA_FOLDER}/")
                copy_hashed(source / relative, target)
                written.append(target)
                if target.name == PSEUDONYM_KEY_FILE and target.parent == data_dir:
                    os.chmod(target, 0o600)
        fsync_written(written)
        _restore_database(settings, source / manifest["database"]["dump"])
    except BaseException:
        _empty(data_dir, remove=created)
        raise
    return RestoreReport(data_dir, int(manifest.get("images") or 0), manifest.get("active_build_id"),
                         manifest.get("pseudonym_key", ""), manifest["database"].get("revision"))


def _restore_database(settings: Settings, dump: Path) -> None:
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        target = _sqlite_file(settings.database_url)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.restoring")
        shutil.copyfile(dump, partial)
        os.replace(partial, target)
        return
    url, environment = libpq_target(make_url(settings.database_url))
    run_pg_tool(["pg_restore", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
                 f"--dbname={url}", str(dump)], environment, "pg_restore")


def _empty(data_dir: Path, remove: bool) -> None:
    """Take back what a failed restore wrote into the (formerly empty) data dir."""
    if remove:
        shutil.rmtree(data_dir, ignore_errors=True)
        return
    for entry in data_dir.iterdir():
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
