"""`s2m sketches ...`: synthesized sketches made by the trained synthesizer S."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_group

HELP = "Synthesized sketches (contours of S's masks)."


def synthesize(
    model: Path = typer.Option(..., "--model", help="model bundle folder holding synthesizer.safetensors"),
    data: Path = typer.Option(..., "--data", help="dataset folder (images/) or plain image folder"),
    out: Path = typer.Option(..., "--out", help="folder to write <id>.png sketches into"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0, help="mask score cut; default 0.35"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto"),
) -> None:
    """Apply S to every image of a folder and write one contour sketch per image."""
    from generation.data import image_dir, list_images
    from generation.bundle import SYNTHESIZER, Bundle
    from generation.solov2.synthesize import synthesize_folder
    from generation.training import make_progress, resolve_device

    synthesizer = Bundle.open(model).load(SYNTHESIZER, resolve_device(device))
    total = len(list_images(image_dir(data)))
    with make_progress() as progress:
        task = progress.add_task("synthesize", total=total, status="")
        written, skipped = synthesize_folder(
            synthesizer, data, out, batch_size, threshold, on_batch=lambda n: progress.advance(task, n)
        )
    typer.echo(f"wrote {written} sketches to {out}")
    if skipped:
        typer.echo(f"{len(skipped)} images had no instance above the threshold and got no sketch (first: {skipped[0]})")


def register(app: typer.Typer) -> None:
    """Add the `s2m sketches` command group to the top-level app."""
    add_group(app, "sketches", HELP, {"synthesize": synthesize})
