"""`s2m generate` and `s2m generate-random`: look at what the networks make."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the generation commands to the top-level app."""
