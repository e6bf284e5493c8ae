"""`s2m train generator`: train the StyleGAN2 generator G on an image folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command


def train_generator_command(
    data: Path = typer.Option(..., "--data", help="dataset folder (DIR/images/*.png) or a plain image folder"),
    run_dir: Path = typer.Option(..., "--run-dir", help="run folder: log.jsonl, samples/, checkpoint.pt"),
    preset: str = typer.Option("small", "--preset", help="tiny | small | paper"),
    steps: int = typer.Option(..., "--steps", help="total training steps (a resumed run continues up to this)"),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="model bundle folder that receives G_ema at every checkpoint"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto"),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="continue from RUN_DIR/checkpoint.pt"),
    workers: int = typer.Option(0, "--workers", help="data loader worker processes"),
    limit: Optional[int] = typer.Option(None, "--limit", help="use only the first N images"),
    batch: Optional[int] = typer.Option(None, "--batch", help="total batch size over all processes"),
    augment: Optional[str] = typer.Option(None, "--augment", help="none | fixed | ada"),
    mirror: Optional[bool] = typer.Option(None, "--mirror/--no-mirror", help="random x-flips of reals"),
    r1_gamma: Optional[float] = typer.Option(None, "--r1-gamma"),
    pl_weight: Optional[float] = typer.Option(None, "--pl-weight", help="0 switches path-length regularisation off"),
    sample_every: Optional[int] = typer.Option(None, "--sample-every"),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train StyleGAN2 G and D (non-saturating loss, lazy R1, path length, style mixing, EMA, ADA)."""
    import dataclasses

    from generation.stylegan2.config import DiscriminatorConfig, GanTrainConfig, GeneratorConfig
    from generation.stylegan2.train import RunOptions, train_generator

    overrides = {
        "batch_size": batch, "augment": augment, "mirror": mirror, "r1_gamma": r1_gamma, "pl_weight": pl_weight,
        "sample_every": sample_every, "checkpoint_every": checkpoint_every,
    }
    train_config = dataclasses.replace(GanTrainConfig.for_preset(preset),
                                       **{k: v for k, v in overrides.items() if v is not None})
    options = RunOptions(data=data, run_dir=run_dir, steps=steps, preset=preset, bundle_dir=bundle, device=device,
                         seed=seed, resume=resume, workers=workers, limit=limit, show_progress=progress)
    result = train_generator(options, GeneratorConfig.for_preset(preset), DiscriminatorConfig.for_preset(preset),
                             train_config)
    typer.echo(f"trained to step {result['step']} ({result['images_seen'] / 1000:.1f} kimg, "
               f"{result['images_per_s']:.1f} images/s this run); run in {run_dir}")


def register(group: typer.Typer) -> None:
    """Add `s2m train generator` to the train group."""
    add_command(group, "generator", train_generator_command)
