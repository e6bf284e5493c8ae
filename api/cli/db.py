"""`s2m db ...`: schema migrations of the archive database (S2M_DATABASE_URL)."""

from __future__ import annotations

import typer

from api.cli.errors import add_command

HELP = "Archive database schema (Alembic migrations)."


def upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from indexing.db import current_revision, make_engine
    from indexing.db import upgrade as run_upgrade
    from indexing.settings import Settings

    engine = make_engine(Settings.from_env().database_url)
    try:
        run_upgrade(engine, revision)
        typer.echo(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


def downgrade(revision: str = typer.Argument(..., help="target revision, or 'base' for an empty database")) -> None:
    """Revert migrations down to REVISION."""
    from indexing.db import current_revision, make_engine
    from indexing.db import downgrade as run_downgrade
    from indexing.settings import Settings

    engine = make_engine(Settings.from_env().database_url)
    try:
        run_downgrade(engine, revision)
        typer.echo(f"database at revision {current_revision(engine) or 'base (empty)'}")
    finally:
        engine.dispose()


def status() -> None:
    """Show the database's revision and the latest one; exit 1 when they differ."""
    from indexing.db import current_revision, head_revision, make_engine
    from indexing.settings import Settings

    engine = make_engine(Settings.from_env().database_url)
    try:
        current, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    typer.echo(f"database: {current or 'base (empty)'}   latest: {head}")
    if current != head:
        typer.echo("run `s2m db upgrade`", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `s2m db` command group to the top-level app."""
    group = typer.Typer(help=HELP, no_args_is_help=True)
    add_command(group, "upgrade", upgrade)
    add_command(group, "downgrade", downgrade)
    add_command(group, "status", status)
    app.add_typer(group, name="db")
