"""`s2m train encoder`: E (+ latent discriminator) against the bundle's frozen G and C."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command
from api.cli.run_options import DEVICE, LIMIT, MAX_MINUTES, PROGRESS, RESUME, SEED, WORKERS, run_options


def encoder(
    bundle: Path = typer.Option(..., "--bundle", help="model bundle with generator and embedder; E is saved into it"),
    data: Path = typer.Option(..., "--data", help="dataset folder of photos (images/)"),
    sketches: Path = typer.Option(..., "--sketches", help="synthesized sketches of those photos, same file names"),
    preset: str = typer.Option("small", "--preset", help="tiny, small or paper"),
    run_dir: Path = typer.Option(Path("runs/encoder"), "--run-dir", help="logs, checkpoint, sample grids"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="default: the preset's"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="per process; default: the preset's"),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="held-out photos for free-hand validation"),
    val_sketches: Optional[Path] = typer.Option(None, "--val-sketches", help="free-hand sketches of --val-data"),
    warm_start: Optional[Path] = typer.Option(None, "--warm-start", help="bundle whose trained network to start from"),
    freehand_augment: bool = typer.Option(False, "--freehand-augment", help="augment the training sketches free-hand style"),
    max_minutes: Optional[float] = MAX_MINUTES,
    limit: Optional[int] = LIMIT,
    resume: bool = RESUME,
    device: str = DEVICE,
    workers: int = WORKERS,
    seed: int = SEED,
    progress: bool = PROGRESS,
) -> None:
    """Train E with L_sim + lambda_adv * L_adv (paper eq. 3-5); free-hand sketches only validate."""
    from generation.bundle import GENERATOR, Bundle
    from generation.e4e.config import EncoderConfig, EncoderTrainConfig
    from generation.e4e.train import train_encoder
    from generation.losses import SimilarityConfig
    from generation.paired import PairedInputs
    from generation.sketch_augment import FREEHAND_AUGMENT

    overrides = {k: v for k, v in {"steps": steps, "batch_size": batch_size}.items() if v is not None}
    config = dataclasses.replace(EncoderTrainConfig.for_preset(preset), **overrides)
    w_dim = Bundle.open(bundle).config(GENERATOR)["w_dim"]  # E writes codes of the bundle's G
    options = run_options(data, run_dir, bundle, device, seed, workers, resume, max_minutes, limit, progress)
    paired = PairedInputs(sketches, val_data, val_sketches, warm_start=warm_start,
                          sketch_augment=FREEHAND_AUGMENT if freehand_augment else None)
    run = train_encoder(options, paired, EncoderConfig.for_preset(preset, w_dim=w_dim),
                        SimilarityConfig.for_preset(preset), config)
    typer.echo(f"encoder saved into {bundle}; run logs in {run}")


def register(group: typer.Typer) -> None:
    """Add `s2m train encoder` to the train group."""
    add_command(group, "encoder", encoder)
