"""Sketches of a whole phantom dataset folder: the sketch folders training reads, and a preview sheet.

A sketch folder holds `<id>.png` for every `images/<id>.png` of the dataset, in the Sketch format;
the free-hand ones use a per-image seed derived from the run seed and the id, so a folder is the
same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
from PIL import Image

from formats.categories import PHARYNGEAL_WALL, TONGUE, TONSIL, UVULA
from formats.contours import contour_sketch
from phantoms.contact_sheet import tile_images
from phantoms.freehand import drawer_style, freehand_sketch, sketch_seed
from phantoms.reader import IMAGE_SUFFIX, DatasetCase, case_ids, dataset_categories, load_case


class SketchStyle(str, Enum):
    """The two kinds of sketch a dataset folder can be drawn in."""

    contour = "contour"  # what the synthesizer S produces
    freehand = "freehand"  # what a person drawing from the photo produces


@dataclass(frozen=True)
class PreviewConfig:
    """Look of the preview sheet."""

    category_colours: tuple[tuple[int, tuple[int, int, int]], ...] = (
        (UVULA, (255, 220, 0)),
        (PHARYNGEAL_WALL, (0, 120, 255)),
        (TONSIL, (0, 220, 90)),
        (TONGUE, (230, 0, 200)),
    )
    overlay_alpha: float = 0.45  # share of the category colour over the photo


def draw_sketch(case: DatasetCase, style: SketchStyle, seed: int, abstraction: float | None = None,
                drawer: str | None = None) -> np.ndarray:
    """The Sketch uint8 [H, W] of one case; free-hand sketches are seeded by (seed, image id)."""
    if style is SketchStyle.contour:
        return contour_sketch(case.instance_mask)
    return freehand_sketch(case.instance_mask, case.categories, sketch_seed(seed, case.image_id),
                           abstraction, drawer_style(drawer) if drawer else None)


def write_sketch_folder(dataset: Path, out: Path, style: SketchStyle, seed: int,
                        abstraction: float | None = None, drawer: str | None = None) -> int:
    """Write `out/<id>.png` for every image of `dataset`; returns how many were written.

    Input is checked before the first file is written, so bad input leaves `out` untouched.
    """
    if drawer is not None:
        drawer_style(drawer)
    if abstraction is not None and not 0.0 <= abstraction <= 1.0:
        raise ValueError(f"abstraction must be in [0, 1], got {abstraction}")
    dataset = Path(dataset)
    categories = dataset_categories(dataset) if style is SketchStyle.freehand else None
    ids = case_ids(dataset)
    unmasked = [image_id for image_id in ids if not (dataset / "masks" / f"{image_id}{IMAGE_SUFFIX}").exists()]
    unannotated = [image_id for image_id in ids if categories is not None and image_id not in categories]
    if unmasked or unannotated:
        raise FileNotFoundError(f"{len(unmasked)} images lack masks/<id>.png and {len(unannotated)} lack "
                                f"annotations in {dataset} (first: {(unmasked + unannotated)[0]})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        sketch = draw_sketch(load_case(dataset, image_id, categories), style, seed, abstraction, drawer)
        Image.fromarray(sketch).save(out / f"{image_id}{IMAGE_SUFFIX}")
    return len(ids)


def mask_overlay(case: DatasetCase, config: PreviewConfig = PreviewConfig()) -> np.ndarray:
    """The photo [H, W, 3] with each instance tinted by its category colour."""
    colours = dict(config.category_colours)
    tint = case.image.astype(np.float32)
    for instance_id, category in case.categories.items():
        inside = case.instance_mask == instance_id
        tint[inside] = (1 - config.overlay_alpha) * tint[inside] + config.overlay_alpha * np.array(colours[category])
    return tint.round().astype(np.uint8)


def preview_sheet(dataset: Path, count: int, seed: int, abstraction: float | None = None,
                  config: PreviewConfig = PreviewConfig()) -> np.ndarray:
    """An RGB grid, one row per case: photo, mask overlay, contour sketch, free-hand sketch."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    categories = dataset_categories(dataset)
    tiles = []
    for image_id in case_ids(dataset)[:count]:
        case = load_case(dataset, image_id, categories)
        sketches = [draw_sketch(case, style, seed, abstraction) for style in SketchStyle]
        tiles += [case.image, mask_overlay(case, config)] + [np.repeat(s[:, :, None], 3, axis=2) for s in sketches]
    return tile_images(tiles, columns=len(SketchStyle) + 2)

