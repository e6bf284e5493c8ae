"""`s2m queries prune`: remove the searches older than the retention (`S2M_QUERIES_MAX_AGE_DAYS`)."""

from __future__ import annotations

from typing import Optional

import typer

from api.cli.archive import open_archive
from api.cli.errors import add_group
from formats.errors import InputError

HELP = "The searches the service keeps (query log, their vectors and pictures)."


def prune(
    max_age_days: Optional[int] = typer.Option(None, "--max-age-days", help="keep searches this many days (default S2M_QUERIES_MAX_AGE_DAYS, 30)"),
) -> None:
    """Remove the searches older than the retention, except those a saved search names; print how many went."""
    from datetime import timedelta

    from indexing.searches import prune_queries

    if max_age_days is not None and max_age_days <= 0:
        raise InputError(f"--max-age-days must be a positive number of days, got {max_age_days}")
    with open_archive() as archive:
        days = max_age_days or archive.settings.queries_max_age_days
        with archive.sessions.begin() as session:
            removed = prune_queries(session, timedelta(days=days))
    typer.echo(f"removed {removed} searches older than {days} days (saved searches are kept until forgotten)")


def register(app: typer.Typer) -> None:
    """Add the `s2m queries` group to the top-level app."""
    add_group(app, "queries", HELP, {"prune": prune})
