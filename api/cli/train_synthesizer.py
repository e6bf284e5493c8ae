"""`s2m train synthesizer`: train S (SOLOv2) on a COCO-annotated dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from api.cli.errors import add_command
from api.cli.run_options import BATCH_SIZE, PRESET, RUN, echo_result, shared_options

if TYPE_CHECKING:
    from generation.training import RunOptions


def synthesizer(
    data: Path = typer.Option(..., "--data", help="COCO-annotated folder: annotations.json and images/"),
    preset: str = PRESET,
    run_dir: Path = typer.Option(Path("runs/synthesizer"), "--run-dir", help="logs, checkpoint, overlays"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="default: the preset's"),
    batch_size: Optional[int] = BATCH_SIZE,
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="held-out share (default 0.2)"),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="model bundle folder to save S into at the end"),
    options: RunOptions = RUN,
) -> None:
    """Train the sketch synthesizer S; validation DICE per class is logged every epoch."""
    import dataclasses

    from generation.solov2.config import SynthesizerConfig, SynthesizerTrainingConfig
    from generation.solov2.train import train_synthesizer

    overrides = {
        key: value
        for key, value in {"epochs": epochs, "batch_size": batch_size, "val_fraction": val_fraction}.items()
        if value is not None
    }
    training = dataclasses.replace(SynthesizerTrainingConfig.for_preset(preset), **overrides)
    result = train_synthesizer(options, SynthesizerConfig.for_preset(preset), training)
    dice = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.get("val_dice", {}).items())
    echo_result(result, f"{result.metrics.get('epochs', 0)} epochs; val DICE: {dice}")


def register(group: typer.Typer) -> None:
    """Add `s2m train synthesizer` to the train group."""
    add_command(group, "synthesizer", shared_options(synthesizer))
