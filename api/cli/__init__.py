"""The `s2m` command line: one typer app composed of per-area command groups.

Each area registers its commands in its own module so that heavy imports (torch, SQLAlchemy)
happen only inside the command that needs them, keeping `s2m --help` fast.
"""

from __future__ import annotations

import typer

from api.cli import archive, bundle, db, demo, evaluate, generate, index, phantom, search, sketches, train

app = typer.Typer(
    name="s2m",
    help="Sketch2MedI: sketch-based retrieval of pharyngeal photographs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(phantom.app, name="phantom")
app.add_typer(sketches.app, name="sketches")
app.add_typer(train.app, name="train")
app.add_typer(archive.app, name="archive")
app.add_typer(db.app, name="db")
app.add_typer(bundle.app, name="bundle")
app.add_typer(index.app, name="index")
generate.register(app)
evaluate.register(app)
demo.register(app)
search.register(app)
