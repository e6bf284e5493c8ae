"""`s2m demo`: the main job of `make demo`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""
