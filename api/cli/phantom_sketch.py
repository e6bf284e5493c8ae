"""`s2m phantom sketch` and `s2m phantom preview`: sketches of a phantom dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command


STYLE_CHOICES = ("contour", "freehand")  # the values of phantoms.preview.SketchStyle, without importing cv2


def sketch(
    dataset: Path = typer.Argument(..., help="phantom dataset folder (images/, masks/, annotations.json)"),
    out: Path = typer.Option(..., "--out", help="folder to write <id>.png sketches into"),
    style: str = typer.Option("contour", "--style", help="contour (what S draws) or freehand (a person)"),
    abstraction: Optional[float] = typer.Option(
        None, "--abstraction", min=0.0, max=1.0, help="free-hand roughness 0..1; default: drawn per drawer"
    ),
    drawer: Optional[str] = typer.Option(None, "--drawer", help="pin one free-hand drawer style by name"),
    seed: int = typer.Option(0, "--seed", help="run seed; each image's seed derives from it and its id"),
) -> None:
    """Draw a sketch for every image of a phantom dataset folder."""
    from phantoms.preview import SketchStyle, write_sketch_folder

    if style not in STYLE_CHOICES:
        raise typer.BadParameter(f"choose one of {list(STYLE_CHOICES)}", param_hint="--style")
    written = write_sketch_folder(dataset, out, SketchStyle(style), seed, abstraction, drawer)
    typer.echo(f"wrote {written} {style} sketches to {out}")


def preview(
    dataset: Path = typer.Argument(..., help="phantom dataset folder"),
    output: Path = typer.Option(..., "-o", "--output", help="PNG file for the preview sheet"),
    count: int = typer.Option(4, "--count", min=1, help="number of cases (rows)"),
    abstraction: Optional[float] = typer.Option(None, "--abstraction", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """A sheet with one row per case: photo, mask overlay, contour sketch, free-hand sketch."""
    from PIL import Image

    from phantoms.preview import preview_sheet

    sheet = preview_sheet(dataset, count, seed, abstraction)
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(output, optimize=True)
    typer.echo(f"wrote {output} ({sheet.shape[1]}x{sheet.shape[0]})")


def register(group: typer.Typer) -> None:
    """Add `sketch` and `preview` to the `s2m phantom` group."""
    add_command(group, "sketch", sketch)
    add_command(group, "preview", preview)
