"""A contact sheet: the first images of a dataset tiled in a grid, for READMEs and eyeballing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from phantoms.reader import case_ids, image_path

GUTTER_PX = 4


def tile_images(images: list[np.ndarray], columns: int) -> np.ndarray:
    """uint8 [H, W, 3] images of one size -> one uint8 grid image with white gutters."""
    if not images:
        raise ValueError("no images to tile")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    height, width = images[0].shape[:2]
    rows = -(-len(images) // columns)
    sheet = np.full((rows * (height + GUTTER_PX) + GUTTER_PX, columns * (width + GUTTER_PX) + GUTTER_PX, 3), 255, np.uint8)
    for i, image in enumerate(images):
        row, col = divmod(i, columns)
        top, left = GUTTER_PX + row * (height + GUTTER_PX), GUTTER_PX + col * (width + GUTTER_PX)
        sheet[top : top + height, left : left + width] = image
    return sheet


def save_contact_sheet(dataset: Path, out: Path, count: int = 16, columns: int = 4) -> Path:
    """Write the first `count` images of `dataset/images` as a grid PNG at `out`."""
    paths = [image_path(dataset, image_id) for image_id in case_ids(dataset)[:count]]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tile_images(images, columns)).save(out, optimize=True)
    return out
