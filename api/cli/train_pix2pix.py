"""`s2m train pix2pix`: the pix2pix baseline on synthesized (sketch, photo) pairs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command


def pix2pix(
    bundle: Path = typer.Option(..., "--bundle", help="bundle folder the baseline is saved into (created if new)"),
    data: Path = typer.Option(..., "--data", help="dataset folder of photos (images/)"),
    sketches: Path = typer.Option(..., "--sketches", help="synthesized sketches of those photos, same file names"),
    preset: str = typer.Option("small", "--preset", help="tiny, small or paper"),
    run_dir: Path = typer.Option(Path("runs/pix2pix"), "--run-dir", help="logs, checkpoint, sample grids"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="optimiser steps; default: the preset's"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="per process; default: the preset's"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.0, help="stop (and export) after this long"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="use only the first N training pairs"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run dir's checkpoint"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto"),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="DataLoader worker processes"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train pix2pix: U-Net generator, PatchGAN discriminator, L1 + adversarial loss (Isola et al. 2017)."""
    from generation.paired import PairedRunOptions
    from generation.pix2pix.config import Pix2PixTrainConfig
    from generation.pix2pix.train import train_pix2pix

    overrides = {k: v for k, v in {"steps": steps, "batch_size": batch_size, "num_workers": workers}.items()
                 if v is not None}
    config = dataclasses.replace(Pix2PixTrainConfig.for_preset(preset), seed=seed, **overrides)
    options = PairedRunOptions(bundle=bundle, dataset=data, sketches=sketches, run_dir=run_dir, device=device,
                               resume=resume, max_minutes=max_minutes, limit=limit)
    run = train_pix2pix(options, config)
    typer.echo(f"pix2pix saved into {bundle}; run logs in {run}")


def register(group: typer.Typer) -> None:
    """Add `s2m train pix2pix` to the train group."""
    add_command(group, "pix2pix", pix2pix)
