"""Migrations up and down from empty, model/migration agreement, and the revision gate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from indexing.archive import Archive
from indexing.db import DatabaseOutOfDateError, current_revision, downgrade, ensure_current, head_revision, make_engine, upgrade
from indexing.models import Base

ARCHIVE_TABLES = {"images", "annotations", "sketches", "embeddings", "index_builds", "api_keys", "query_log"}


def test_migrations_up_down_up_from_empty(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert ARCHIVE_TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == [], "models and migrations disagree"
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert not ARCHIVE_TABLES & set(inspect(engine).get_table_names())
        upgrade(engine)
        ensure_current(engine)
    finally:
        engine.dispose()


def test_archive_refuses_a_database_behind_the_latest_revision(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatabaseOutOfDateError, match="s2m db upgrade"):
        Archive.open(settings)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    downgrade(engine, "base")
    engine.dispose()
    with pytest.raises(DatabaseOutOfDateError, match=f"needs revision {head_revision()}"):
        Archive.open(settings)


def _s2m(args: list[str], cwd: Path, database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, S2M_DATABASE_URL=database_url, S2M_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1")
    command = [sys.executable, "-c", "from api.cli import app; app()", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_cli_db_upgrade_works_from_any_directory(tmp_path: Path, database_url: str) -> None:
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    data_dir = tmp_path / "data"
    refused = _s2m(["archive", "stats"], elsewhere, database_url, data_dir)
    assert refused.returncode == 2
    assert "run `s2m db upgrade`" in refused.stderr
    upgraded = _s2m(["db", "upgrade"], elsewhere, database_url, data_dir)
    assert upgraded.returncode == 0, upgraded.stderr
    assert head_revision() in upgraded.stdout
    stats = _s2m(["archive", "stats"], elsewhere, database_url, data_dir)
    assert stats.returncode == 0, stats.stderr
    assert "images: 0" in stats.stdout
