"""`s2m apikey create|list|revoke`: the service's API keys (stored hashed; the token is shown once)."""

from __future__ import annotations

import typer

from api.cli.archive import open_archive
from api.cli.errors import add_group
from formats.errors import InputError


def create(
    name: str = typer.Argument(..., help="who or what the key is for (e.g. the viewer's host)"),
    scopes: list[str] = typer.Option(["search"], "--scope", help="search (read the archive) or admin (also refresh the index); repeatable"),
) -> None:
    """Make a key and print its token once (only its hash is stored)."""
    from indexing import store
    from indexing.models import SCOPES

    if not name.strip():
        raise InputError("an API key needs a non-empty name")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InputError(f"unknown scope {unknown[0]!r}: use one of {', '.join(SCOPES)}")
    with open_archive() as archive:
        with archive.sessions.begin() as session:
            key, token = store.create_api_key(session, name.strip(), scopes)
            key_id = key.id
    typer.echo(f"created API key {key_id} ({name.strip()}, scopes {', '.join(sorted(set(scopes)))}); "
               "its token, shown only now:", err=True)
    typer.echo(token)


def list_keys() -> None:
    """Every key: id, name, scopes, created, revoked (never a secret)."""
    from indexing import store

    with open_archive() as archive:
        with archive.sessions() as session:
            keys = store.list_api_keys(session)
    typer.echo(f"{'id':>4}  {'name':<24} {'scopes':<14} {'created':<20} revoked")
    for key in keys:
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "-"
        typer.echo(f"{key.id:>4}  {key.name[:24]:<24} {','.join(key.scopes):<14} {key.created_at:%Y-%m-%d %H:%M}     {revoked}")


def revoke(key_id: int = typer.Argument(..., help="the key's id (from `s2m apikey list`)")) -> None:
    """Revoke a key: its token is refused from now on (the row stays for the audit log)."""
    from indexing import store

    with open_archive() as archive:
        with archive.sessions.begin() as session:
            store.revoke_api_key(session, key_id)
    typer.echo(f"revoked API key {key_id}")


def register(app: typer.Typer) -> None:
    """Add the `s2m apikey` group to the top-level app."""
    add_group(app, "apikey", "API keys of the HTTP service.", {"create": create, "list": list_keys, "revoke": revoke})
