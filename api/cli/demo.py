"""`s2m demo`: the main job of `make demo`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from api.cli.errors import add_command

from generation.presets import SHIPPED_BUNDLE

DEMO_CASES = 64
DEMO_SIZE = 256
DEMO_SEED = 0
CONTACT_SHEET_IMAGES = 16
GENERATED_CASES = 6  # rows of the Sketch2MedI sheet: free-hand sketch | x_0 | x_T | reference


def demo_root() -> Path:
    """`$S2M_DATA_DIR/demo`, or `data/demo` inside the project."""
    data_dir = os.environ.get("S2M_DATA_DIR")
    base = Path(data_dir) if data_dir else Path(__file__).resolve().parents[2] / "data"
    return base / "demo"


def demo(
    workers: int = typer.Option(min(2, os.cpu_count() or 1), "--workers", help="rendering processes"),
    model: Path = typer.Option(None, "--model", help="model bundle (default: the shipped models/small)"),
) -> None:
    """Build the demo: a phantom archive, its contact sheet, and Sketch2MedI images from free-hand sketches."""
    import time

    from phantoms.contact_sheet import save_contact_sheet
    from phantoms.dataset import generate_dataset

    root = demo_root()
    began = time.perf_counter()
    dataset = generate_dataset(root / "phantoms", DEMO_CASES, DEMO_SIZE, DEMO_SEED, workers=workers)
    sheet = save_contact_sheet(dataset, root / "phantom_contact_sheet.png", count=CONTACT_SHEET_IMAGES)
    typer.echo(f"phantom archive: {dataset} ({DEMO_CASES} cases at {DEMO_SIZE} px, {time.perf_counter() - began:.1f} s)")
    typer.echo("  images, masks, annotations.json (COCO), metadata.csv")
    typer.echo(f"contact sheet:   {sheet}")
    generated = generate_from_freehand(dataset, model or SHIPPED_BUNDLE, root / "sketch2medi_demo.png")
    typer.echo(f"Sketch2MedI:     {generated}")
    typer.echo("  rows: free-hand sketch | x_0 = G(E(sketch)) | x_T after T refinement steps of H | reference photo")


def generate_from_freehand(dataset: Path, model: Path, output: Path) -> Path:
    """Simulate free-hand sketches of the first cases, run Sketch2MedI on them, write one sheet.

    The sketches come from the free-hand simulator (never seen in training), as a clinician's
    drawing would; the reference photo is shown beside what the networks made of the sketch.
    """
    import numpy as np
    import torch
    from PIL import Image

    from formats.sketch import canonical_sketch
    from generation.data import image_to_tensor, load_rgb, sketch_to_tensor
    from generation.pipeline import Sketch2MedI
    from generation.training import save_image_grid
    from phantoms.dataset import instance_categories
    from phantoms.freehand import freehand_sketch, sketch_seed

    pipeline = Sketch2MedI.from_bundle(model)
    categories = instance_categories(dataset)
    names = sorted(categories)[:GENERATED_CASES]
    sketches, references = [], []
    for name in names:
        with Image.open(dataset / "masks" / name) as mask:
            instance_mask = np.asarray(mask)
        drawing = freehand_sketch(instance_mask, categories[name], seed=sketch_seed(DEMO_SEED, Path(name).stem))
        sketches.append(sketch_to_tensor(canonical_sketch(drawing, pipeline.resolution)))  # [1, R, R]
        references.append(image_to_tensor(load_rgb(dataset / "images" / name, pipeline.resolution)))  # [3, R, R]
    sketch_batch = torch.stack(sketches)  # [N, 1, R, R]
    generated = pipeline.run(sketch_batch)
    rows = [torch.stack([s.expand(3, -1, -1), a, b, r])
            for s, a, b, r in zip(sketch_batch, generated.x_0, generated.image, references)]
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(torch.cat(rows), output, nrow=4)
    return output


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""
    add_command(app, "demo", demo)
