"""`s2m demo`: the main job of `make demo`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

DEMO_CASES = 64
DEMO_SIZE = 256
DEMO_SEED = 0
CONTACT_SHEET_IMAGES = 16


def demo_root() -> Path:
    """`$S2M_DATA_DIR/demo`, or `data/demo` inside the project."""
    data_dir = os.environ.get("S2M_DATA_DIR")
    base = Path(data_dir) if data_dir else Path(__file__).resolve().parents[2] / "data"
    return base / "demo"


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""

    @app.command("demo")
    def demo(
        workers: int = typer.Option(min(2, os.cpu_count() or 1), "--workers", help="rendering processes"),
    ) -> None:
        """Build the demo: a small phantom pharynx archive and its contact sheet."""
        import time

        from phantoms.contact_sheet import save_contact_sheet
        from phantoms.dataset import generate_dataset

        root = demo_root()
        began = time.perf_counter()
        try:
            dataset = generate_dataset(root / "phantoms", DEMO_CASES, DEMO_SIZE, DEMO_SEED, workers=workers)
            sheet = save_contact_sheet(dataset, root / "phantom_contact_sheet.png", count=CONTACT_SHEET_IMAGES)
        except (ValueError, OSError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=2) from None
        typer.echo(f"phantom archive: {dataset} ({DEMO_CASES} cases at {DEMO_SIZE} px, {time.perf_counter() - began:.1f} s)")
        typer.echo("  images, masks, annotations.json (COCO), metadata.csv")
        typer.echo(f"contact sheet:   {sheet}")
