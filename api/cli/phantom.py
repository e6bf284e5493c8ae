"""`s2m phantom ...` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from api.cli import phantom_sketch
from api.cli.errors import add_group

HELP = "The phantom pharynx archive: render datasets, sketches, previews."


def generate(
    out: Path = typer.Option(..., "--out", help="dataset folder to write (created if missing)"),
    count: int = typer.Option(..., "--count", help="number of cases"),
    size: int = typer.Option(256, "--size", help="image side in pixels, a multiple of 8"),
    seed: int = typer.Option(0, "--seed", help="archive seed: the same seed gives the same archive"),
    workers: int = typer.Option(1, "--workers", help="processes; the output does not depend on it"),
    start: int = typer.Option(0, "--start", help="first case number (to extend an archive)"),
    dicom: bool = typer.Option(False, "--dicom", help="also write VL Photographic Image DICOM files"),
) -> None:
    """Render a phantom pharynx archive: images, instance masks, COCO annotations, metadata."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from phantoms.dataset import check_arguments, generate_dataset

    began = time.perf_counter()
    check_arguments(out, count, size, seed, workers, start)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("rendering", total=count)
        generate_dataset(
            out, count, size, seed, workers=workers, dicom=dicom, start=start,
            on_progress=lambda done: bar.update(task, completed=done),
        )
    elapsed = time.perf_counter() - began
    typer.echo(f"wrote {count} cases to {out} in {elapsed:.1f} s ({count / elapsed:.1f} images/s)")


def contact_sheet(
    dataset: Path = typer.Argument(..., help="phantom dataset folder"),
    out: Path = typer.Option(..., "--out", help="PNG file to write"),
    count: int = typer.Option(16, "--count", help="number of images (the first ones)"),
    columns: int = typer.Option(4, "--columns"),
) -> None:
    """Tile the first images of a dataset into one PNG."""
    from phantoms.contact_sheet import save_contact_sheet

    save_contact_sheet(dataset, out, count=count, columns=columns)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add the `s2m phantom` command group to the top-level app."""
    phantom_sketch.register(add_group(app, "phantom", HELP, {"generate": generate, "contact-sheet": contact_sheet}))
