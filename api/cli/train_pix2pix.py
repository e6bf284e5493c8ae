"""`s2m train pix2pix`: the pix2pix baseline on synthesized (sketch, photo) pairs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from api.cli.errors import add_command
from api.cli.run_options import BATCH_SIZE, PHOTOS, PRESET, RUN, SKETCHES, echo_result, shared_options

if TYPE_CHECKING:
    from generation.training import RunOptions


def pix2pix(
    bundle: Path = typer.Option(..., "--bundle", help="bundle folder the baseline is saved into (created if new)"),
    data: Path = PHOTOS,
    sketches: Path = SKETCHES,
    preset: str = PRESET,
    run_dir: Path = typer.Option(Path("runs/pix2pix"), "--run-dir", help="logs, checkpoint, sample grids"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="optimiser steps; default: the preset's"),
    batch_size: Optional[int] = BATCH_SIZE,
    options: RunOptions = RUN,
) -> None:
    """Train pix2pix: U-Net generator, PatchGAN discriminator, L1 + adversarial loss (Isola et al. 2017)."""
    from generation.paired import PairedInputs
    from generation.pix2pix.config import Pix2PixConfig, Pix2PixTrainConfig
    from generation.pix2pix.train import train_pix2pix

    overrides = {k: v for k, v in {"steps": steps, "batch_size": batch_size}.items() if v is not None}
    config = dataclasses.replace(Pix2PixTrainConfig.for_preset(preset), **overrides)
    result = train_pix2pix(options, PairedInputs(sketches), Pix2PixConfig.for_preset(preset), config)
    echo_result(result)


def register(group: typer.Typer) -> None:
    """Add `s2m train pix2pix` to the train group."""
    add_command(group, "pix2pix", shared_options(pix2pix))
