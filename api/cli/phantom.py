"""`s2m phantom ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="phantom commands.", no_args_is_help=True)

from api.cli import phantom_sketch  # noqa: E402,F401  (registers `sketch` and `preview`)
