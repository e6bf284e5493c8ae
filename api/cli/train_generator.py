"""`s2m train generator`: train the StyleGAN2 generator G on an image folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from api.cli.errors import add_command
from api.cli.run_options import RUN, echo_result, shared_options

if TYPE_CHECKING:
    from generation.training import RunOptions


def train_generator_command(
    data: Path = typer.Option(..., "--data", help="dataset folder (DIR/images/*.png) or a plain image folder"),
    run_dir: Path = typer.Option(..., "--run-dir", help="run folder: log.jsonl, samples/, checkpoint.pt"),
    preset: str = typer.Option("small", "--preset", help="tiny | small | paper"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                        help="total training steps, default: the preset's (a resumed run continues up to this)"),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="model bundle folder that receives G_ema at every checkpoint"),
    batch: Optional[int] = typer.Option(None, "--batch", help="total batch size over all processes"),
    augment: Optional[str] = typer.Option(None, "--augment", help="none | fixed | ada"),
    mirror: Optional[bool] = typer.Option(None, "--mirror/--no-mirror", help="random x-flips of reals"),
    r1_gamma: Optional[float] = typer.Option(None, "--r1-gamma"),
    pl_weight: Optional[float] = typer.Option(None, "--pl-weight", help="0 switches path-length regularisation off"),
    sample_every: Optional[int] = typer.Option(None, "--sample-every"),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every"),
    options: RunOptions = RUN,
) -> None:
    """Train StyleGAN2 G and D (non-saturating loss, lazy R1, path length, style mixing, EMA, ADA)."""
    import dataclasses

    from generation.stylegan2.config import DiscriminatorConfig, GanTrainConfig, GeneratorConfig
    from generation.stylegan2.train import train_generator

    preset_config = GanTrainConfig.for_preset(preset)
    cadence = {"sample_every": sample_every, "checkpoint_every": checkpoint_every}
    overrides = {
        "steps": steps, "batch_size": batch, "augment": augment, "mirror": mirror, "r1_gamma": r1_gamma,
        "pl_weight": pl_weight,
    }
    train_config = dataclasses.replace(
        preset_config, **{k: v for k, v in overrides.items() if v is not None},
        cadence=dataclasses.replace(preset_config.cadence, **{k: v for k, v in cadence.items() if v is not None}))
    result = train_generator(options, GeneratorConfig.for_preset(preset), DiscriminatorConfig.for_preset(preset),
                             train_config)
    echo_result(result, f"{result.metrics.get('images_seen', 0) / 1000:.1f} kimg, "
                        f"{result.metrics.get('images_per_s', 0.0):.1f} images/s")


def register(group: typer.Typer) -> None:
    """Add `s2m train generator` to the train group."""
    add_command(group, "generator", shared_options(train_generator_command))
