"""`s2m train embedder`: train C (MoCo v2) on an image archive."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from api.cli.errors import add_command
from api.cli.run_options import RUN, echo_result, shared_options

if TYPE_CHECKING:
    from generation.training import RunOptions


def embedder(
    data: Path = typer.Option(..., "--data", help="Dataset folder (images/ + metadata.csv) or a plain image folder."),
    preset: str = typer.Option("small", help="tiny | small | paper."),
    run_dir: Path = typer.Option(Path("runs/embedder"), "--run-dir", help="Logs, samples and checkpoint go here."),
    epochs: Optional[int] = typer.Option(None, help="Override the preset's number of epochs (sets the cosine schedule)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the preset's batch size per process."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", help="Override the preset's base learning rate."),
    queue_size: Optional[int] = typer.Option(None, "--queue-size", help="Override K (keep it well below the archive size)."),
    resolution: Optional[int] = typer.Option(
        None, "--resolution", help="Override the side C reads images at (finer than the data resolves small findings)."
    ),
    label_columns: str = typer.Option(
        "diagnosis,tonsil_grade", "--label-columns", help="Comma-separated metadata.csv columns the probes predict."
    ),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Steps between JSONL log records."),
    checkpoint_minutes: float = typer.Option(5.0, "--checkpoint-minutes", help="Wall-clock minutes between checkpoints."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many steps in total."),
    warm_start: Optional[Path] = typer.Option(
        None, "--warm-start", help="Start both trunks from this bundle's C (e.g. to continue it at a finer --resolution)."
    ),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Save C as `embedder` into this model bundle at the end."),
    perceptual_backbone: Optional[str] = typer.Option(
        None, "--perceptual-backbone", help="Record which perceptual distance the bundle's losses use (see SimilarityConfig)."
    ),
    options: RunOptions = RUN,
) -> None:
    """Train the MoCo v2 embedder C with a k-NN probe each epoch."""
    from generation.losses import PERCEPTUAL_BACKBONES
    from generation.configs import Cadence
    from generation.moco.config import EmbedderConfig
    from generation.moco.train import EmbedderTraining, train_embedder

    if perceptual_backbone is not None and perceptual_backbone not in PERCEPTUAL_BACKBONES:
        raise typer.BadParameter(f"choose one of {PERCEPTUAL_BACKBONES}", param_hint="--perceptual-backbone")
    try:
        config = EmbedderConfig.for_preset(preset)
        overrides = {k: v for k, v in {"seed": options.seed, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "queue_size": queue_size, "resolution": resolution}.items() if v is not None}
        config = config.replace(**overrides)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    settings = EmbedderTraining(
        label_columns=tuple(c.strip() for c in label_columns.split(",") if c.strip()),
        cadence=Cadence(log_every=log_every, checkpoint_minutes=checkpoint_minutes), max_steps=max_steps,
        perceptual_backbone=perceptual_backbone,
        warm_start=warm_start,
    )
    result = train_embedder(options, settings, config)
    echo_result(result, " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in result.metrics.items()))


def register(group: typer.Typer) -> None:
    """Add `s2m train embedder` to the train group."""
    add_command(group, "embedder", shared_options(embedder))
