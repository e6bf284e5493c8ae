"""`s2m train pix2pix`: the pix2pix baseline on synthesized (sketch, photo) pairs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command
from api.cli.run_options import DEVICE, LIMIT, MAX_MINUTES, PROGRESS, RESUME, SEED, WORKERS, run_options


def pix2pix(
    bundle: Path = typer.Option(..., "--bundle", help="bundle folder the baseline is saved into (created if new)"),
    data: Path = typer.Option(..., "--data", help="dataset folder of photos (images/)"),
    sketches: Path = typer.Option(..., "--sketches", help="synthesized sketches of those photos, same file names"),
    preset: str = typer.Option("small", "--preset", help="tiny, small or paper"),
    run_dir: Path = typer.Option(Path("runs/pix2pix"), "--run-dir", help="logs, checkpoint, sample grids"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="optimiser steps; default: the preset's"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="per process; default: the preset's"),
    max_minutes: Optional[float] = MAX_MINUTES,
    limit: Optional[int] = LIMIT,
    resume: bool = RESUME,
    device: str = DEVICE,
    workers: int = WORKERS,
    seed: int = SEED,
    progress: bool = PROGRESS,
) -> None:
    """Train pix2pix: U-Net generator, PatchGAN discriminator, L1 + adversarial loss (Isola et al. 2017)."""
    from generation.paired import PairedInputs
    from generation.pix2pix.config import Pix2PixConfig, Pix2PixTrainConfig
    from generation.pix2pix.train import train_pix2pix

    overrides = {k: v for k, v in {"steps": steps, "batch_size": batch_size}.items() if v is not None}
    config = dataclasses.replace(Pix2PixTrainConfig.for_preset(preset), **overrides)
    options = run_options(data, run_dir, bundle, device, seed, workers, resume, max_minutes, limit, progress)
    run = train_pix2pix(options, PairedInputs(sketches), Pix2PixConfig.for_preset(preset), config)
    typer.echo(f"pix2pix saved into {bundle}; run logs in {run}")


def register(group: typer.Typer) -> None:
    """Add `s2m train pix2pix` to the train group."""
    add_command(group, "pix2pix", pix2pix)
