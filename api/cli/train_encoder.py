"""`s2m train encoder`: E (+ latent discriminator) against the bundle's frozen G and C."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command


def encoder(
    bundle: Path = typer.Option(..., "--bundle", help="model bundle with generator and embedder; E is saved into it"),
    data: Path = typer.Option(..., "--data", help="dataset folder of photos (images/)"),
    sketches: Path = typer.Option(..., "--sketches", help="synthesized sketches of those photos, same file names"),
    preset: str = typer.Option("small", "--preset", help="tiny, small or paper"),
    run_dir: Path = typer.Option(Path("runs/encoder"), "--run-dir", help="logs, checkpoint, sample grids"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="default: the preset's"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="per process; default: the preset's"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.0, help="stop (and export) after this long"),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="held-out photos for free-hand validation"),
    val_sketches: Optional[Path] = typer.Option(None, "--val-sketches", help="free-hand sketches of --val-data"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="use only the first N training pairs"),
    warm_start: Optional[Path] = typer.Option(None, "--warm-start", help="bundle whose trained network to start from"),
    freehand_augment: bool = typer.Option(False, "--freehand-augment", help="augment the training sketches free-hand style"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run dir's checkpoint"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto"),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="DataLoader worker processes"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train E with L_sim + lambda_adv * L_adv (paper eq. 3-5); free-hand sketches only validate."""
    from generation.e4e.config import EncoderTrainConfig
    from generation.e4e.train import PairedRunOptions, train_encoder

    from generation.sketch_augment import FREEHAND_AUGMENT

    overrides = {k: v for k, v in {"steps": steps, "batch_size": batch_size, "num_workers": workers}.items() if v is not None}
    config = dataclasses.replace(EncoderTrainConfig.for_preset(preset), seed=seed, **overrides)
    options = PairedRunOptions(bundle=bundle, dataset=data, sketches=sketches, run_dir=run_dir, device=device,
                               resume=resume, max_minutes=max_minutes, val_dataset=val_data,
                               val_sketches=val_sketches, limit=limit, warm_start=warm_start,
                               sketch_augment=FREEHAND_AUGMENT if freehand_augment else None)
    run = train_encoder(options, config)
    typer.echo(f"encoder saved into {bundle}; run logs in {run}")


def register(group: typer.Typer) -> None:
    """Add `s2m train encoder` to the train group."""
    add_command(group, "encoder", encoder)
