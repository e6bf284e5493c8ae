"""`python -m api.cli`: the `s2m` command line without an installed entry point."""

from api.cli import app

app()
