"""`s2m train refiner`: H against the bundle's frozen G, C and E."""

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


def refiner(
    bundle: Path = typer.Option(..., "--bundle", help="model bundle with generator, embedder, encoder; H is saved into it"),
    data: Path = PHOTOS,
    sketches: Path = SKETCHES,
    preset: str = PRESET,
    run_dir: Path = typer.Option(Path("runs/refiner"), "--run-dir", help="logs, checkpoint, sample grids"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="optimiser steps; default: the preset's"),
    refinement_steps: Optional[int] = typer.Option(None, "--refinement-steps", min=1, help="T (default 3)"),
    batch_size: Optional[int] = BATCH_SIZE,
    embedder_side: Optional[int] = EMBEDDER_SIDE,
    paired: PairedInputs = PAIRED,
    options: RunOptions = RUN,
) -> None:
    """Train H: T refinement steps per batch, L_sim at every step (paper eq. 1 and 6)."""
    from generation.hyperstyle.config import HyperNetworkConfig, RefinerTrainConfig
    from generation.hyperstyle.train import train_refiner

    overrides = {k: v for k, v in {"steps": steps, "batch_size": batch_size,
                                   "refinement_steps": refinement_steps}.items() if v is not None}
    config = dataclasses.replace(RefinerTrainConfig.for_preset(preset), **overrides)
    result = train_refiner(options, paired, HyperNetworkConfig.for_preset(preset), similarity_config(preset, embedder_side),
                           config)
    echo_result(result)


def register(group: typer.Typer) -> None:
    """Add `s2m train refiner` to the train group."""
    add_command(group, "refiner", shared_options(refiner))
