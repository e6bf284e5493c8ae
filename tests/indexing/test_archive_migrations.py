"""Migrations up and down from empty, model/migration agreement, and the revision gate."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from typer.testing import CliRunner

from indexing.archive import Archive
from indexing.db import DatabaseOutOfDateError, NoDatabaseFileError, current_revision, downgrade, ensure_current, head_revision, make_engine, upgrade
from indexing.models import Base

ARCHIVE_TABLES = {"images", "annotations", "sketches", "embeddings", "index_builds", "api_keys", "query_log", "access_log", "rate_limit_buckets"}


def test_migrations_up_down_up_from_empty(database_url: str) -> None:
    engine = make_engine(database_url, create=True)
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
    with pytest.raises((DatabaseOutOfDateError, NoDatabaseFileError), match="s2m db upgrade"):
        Archive.open(settings)  # SQLite: no file (none is made); PostgreSQL: an empty database
    engine = make_engine(settings.database_url, create=True)
    upgrade(engine)
    downgrade(engine, "base")
    engine.dispose()
    with pytest.raises(DatabaseOutOfDateError, match=f"needs revision {head_revision()}"):
        Archive.open(settings)


def test_cli_db_upgrade_works_from_any_directory(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.cli import app

    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    env = {"S2M_DATABASE_URL": database_url, "S2M_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    refused = runner.invoke(app, ["archive", "stats"], env=env)
    assert refused.exit_code == 2
    assert "run `s2m db upgrade`" in refused.output
    assert runner.invoke(app, ["db", "status"], env=env).exit_code == 1
    upgraded = runner.invoke(app, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    assert head_revision() in upgraded.output
    assert runner.invoke(app, ["db", "status"], env=env).exit_code == 0
    stats = runner.invoke(app, ["archive", "stats"], env=env)
    assert stats.exit_code == 0, stats.output
    assert "images: 0" in stats.output
