"""The options every `s2m train` command shares, declared once so that they read and default alike.

Each command turns them into one `generation.training.RunOptions`; presets are resolved in the
command, and the loop gets resolved configs only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

DEVICE = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (CUDA when present)")
SEED = typer.Option(0, "--seed", help="seeds every random stream of the run (process r draws from seed + r)")
WORKERS = typer.Option(0, "--workers", min=0, help="DataLoader worker processes")
RESUME = typer.Option(False, "--resume", help="continue from RUN_DIR/checkpoint.pt (same settings)")
MAX_MINUTES = typer.Option(None, "--max-minutes", min=0.0, help="stop (checkpointed and exported) after this long")
LIMIT = typer.Option(None, "--limit", min=1, help="use only the first N training images")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="a progress bar on the main process")


def run_options(data: Path, run_dir: Path, bundle: Optional[Path], device: str, seed: int, workers: int,
                resume: bool, max_minutes: Optional[float], limit: Optional[int], progress: bool):
    """The shared options as the loops take them."""
    from generation.training import RunOptions

    return RunOptions(data=data, run_dir=run_dir, bundle=bundle, device=device, seed=seed, workers=workers,
                      resume=resume, max_minutes=max_minutes, limit=limit, progress=progress)
