"""`s2m train encoder`: E (+ latent discriminator) against the bundle's frozen G and C."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from api.cli.errors import add_command
from api.cli.run_options import (
    BATCH_SIZE, EMBEDDER_SIDE, PAIRED, PHOTOS, PRESET, RUN, SKETCHES, echo_result, shared_options, similarity_config,
)

if TYPE_CHECKING:
    from generation.paired import PairedInputs
    from generation.training import RunOptions


def encoder(
    bundle: Path = typer.Option(..., "--bundle", help="model bundle with generator and embedder; E is saved into it"),
    data: Path = PHOTOS,
    sketches: Path = SKETCHES,
    preset: str = PRESET,
    run_dir: Path = typer.Option(Path("runs/encoder"), "--run-dir", help="logs, checkpoint, sample grids"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="default: the preset's"),
    batch_size: Optional[int] = BATCH_SIZE,
    embedder_side: Optional[int] = EMBEDDER_SIDE,
    paired: PairedInputs = PAIRED,
    options: RunOptions = RUN,
) -> None:
    """Train E with L_sim + lambda_adv * L_adv (paper eq. 3-5); free-hand sketches only validate."""
    from generation.bundle import GENERATOR, Bundle
    from generation.e4e.config import EncoderConfig, EncoderTrainConfig
    from generation.e4e.train import train_encoder

    overrides = {k: v for k, v in {"steps": steps, "batch_size": batch_size}.items() if v is not None}
    config = dataclasses.replace(EncoderTrainConfig.for_preset(preset), **overrides)
    w_dim = Bundle.open(bundle).config(GENERATOR)["w_dim"]  # E writes codes of the bundle's G
    result = train_encoder(options, paired, EncoderConfig.for_preset(preset, w_dim=w_dim),
                           similarity_config(preset, embedder_side), config)
    echo_result(result)


def register(group: typer.Typer) -> None:
    """Add `s2m train encoder` to the train group."""
    add_command(group, "encoder", shared_options(encoder))
