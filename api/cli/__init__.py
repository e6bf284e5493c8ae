"""The `s2m` command line: one typer app composed of per-area command groups.

The one pattern: each area's module defines its commands as plain functions and a
`register(app)` that adds them with `api.cli.errors.add_command` (a group module adds its group
and commands with `add_group`, which calls it). `add_command` puts every
command under the one error policy of `api/cli/errors.py`. Heavy imports (torch, SQLAlchemy)
happen inside the command that needs them, keeping `s2m --help` fast.
"""

from __future__ import annotations

import typer

from api.cli import (
    apikey, archive, bench, bundle, db, demo, evaluate, generate, index, phantom, queries, search, serve, sketches, train, viewer,
)

app = typer.Typer(
    name="s2m",
    help="Sketch2MedI: sketch-based retrieval of pharyngeal photographs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
for module in (phantom, sketches, train, archive, db, bundle, index, generate, search, serve, apikey, queries, evaluate, demo, bench, viewer):
    module.register(app)
