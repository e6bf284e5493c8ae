"""`s2m train <network>`: one command per network, each defined in its own module."""

from __future__ import annotations

import typer

from api.cli import (
    train_embedder,
    train_encoder,
    train_generator,
    train_pix2pix,
    train_refiner,
    train_status,
    train_synthesizer,
)

HELP = "Train the Sketch2MedI networks."


def register(app: typer.Typer) -> None:
    """Add the `s2m train` group, one command per network."""
    group = typer.Typer(help=HELP, no_args_is_help=True)
    for module in (train_generator, train_synthesizer, train_embedder, train_encoder, train_refiner, train_pix2pix,
                   train_status):
        module.register(group)
    app.add_typer(group, name="train")
