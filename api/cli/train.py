"""`s2m train <network>`: one command per network, each defined in its own module.

The modules `train_generator`, `train_synthesizer`, `train_embedder`, `train_encoder` and
`train_refiner` add their command to `app` when imported below.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Train the Sketch2MedI networks.", no_args_is_help=True)

from api.cli import train_embedder, train_encoder, train_generator, train_refiner, train_synthesizer  # noqa: E402,F401
