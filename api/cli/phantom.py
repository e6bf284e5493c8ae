"""`s2m phantom ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="phantom commands.", no_args_is_help=True)
