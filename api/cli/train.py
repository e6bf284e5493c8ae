"""`s2m train <network>`: one command per network, each defined in its own module."""

from __future__ import annotations

import typer

from api.cli import (
    train_embedder,
    train_encoder,
    train_generator,
    train_pix2pix,
    train_refiner,
    train_signs,
    train_status,
    train_synthesizer,
)
from api.cli.errors import add_group

HELP = "Train the Sketch2MedI networks."


def register(app: typer.Typer) -> None:
    """Add the `s2m train` group, one command per network."""
    group = add_group(app, "train", HELP, {})
    for module in (train_generator, train_synthesizer, train_embedder, train_encoder, train_refiner, train_pix2pix,
                   train_signs, train_status):
        module.register(group)
