"""`s2m sketches ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="sketches commands.", no_args_is_help=True)
