"""`s2m db ...`: schema migrations of the archive database (S2M_DATABASE_URL)."""

from __future__ import annotations

import typer

from api.cli.errors import add_group

HELP = "Archive database schema (Alembic migrations)."


def upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    _migrate(revision, down=False)


def downgrade(revision: str = typer.Argument(..., help="target revision, or 'base' for an empty database")) -> None:
    """Revert migrations down to REVISION."""
    _migrate(revision, down=True)


def _migrate(revision: str, down: bool) -> None:
    """Migrate the environment's database to `revision` (either way) and say where it then stands."""
    from indexing.db import current_revision, downgrade, make_engine, upgrade
    from indexing.settings import Settings

    engine = make_engine(Settings.from_env().database_url, create=True)
    try:
        (downgrade if down else upgrade)(engine, revision)
        typer.echo(f"database at revision {current_revision(engine) or 'base (empty)'}")
    finally:
        engine.dispose()


def status() -> None:
    """Show the database's revision and the latest one; exit 1 when they differ (reads only: works on a read-only file)."""
    from indexing.db import NoDatabaseFileError, head_revision, known_revision, make_engine
    from indexing.settings import Settings

    head = head_revision()
    try:
        engine = make_engine(Settings.from_env().database_url, read_only=True)
    except NoDatabaseFileError:
        current = None
    else:
        try:
            current = known_revision(engine)
        finally:
            engine.dispose()
    typer.echo(f"database: {current or 'base (empty)'}   latest: {head}")
    if current != head:
        typer.echo("run `s2m db upgrade`", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `s2m db` command group to the top-level app."""
    add_group(app, "db", HELP, {"upgrade": upgrade, "downgrade": downgrade, "status": status})
