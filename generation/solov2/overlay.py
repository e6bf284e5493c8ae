"""Pictures of instances: coloured masks over the photo, for eyeballing S's predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from generation.solov2.instances import Instance

# One colour per COCO category id: uvula, pharyngeal wall, tonsil, tongue.
CATEGORY_COLOURS: dict[int, tuple[int, int, int]] = {1: (255, 215, 0), 2: (0, 160, 255), 3: (0, 220, 90), 4: (230, 40, 200)}
FALLBACK_COLOUR = (255, 255, 255)
MASK_OPACITY = 0.45


def overlay_instances(image: np.ndarray, instances: Sequence[Instance]) -> np.ndarray:
    """uint8 [H, W, 3] photo -> the same with each instance's mask tinted by its category."""
    canvas = image.astype(np.float32)
    for instance in instances:
        colour = np.array(CATEGORY_COLOURS.get(instance.category, FALLBACK_COLOUR), dtype=np.float32)
        canvas[instance.mask] = (1 - MASK_OPACITY) * canvas[instance.mask] + MASK_OPACITY * colour
    return canvas.round().astype(np.uint8)


def save_overlay_grid(rows: Sequence[Sequence[np.ndarray]], path: Path, zoom: int) -> None:
    """Save rows of equally sized uint8 [H, W, 3] panels as one PNG, each panel magnified `zoom`x."""
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    picture = Image.fromarray(grid)
    picture = picture.resize((picture.width * zoom, picture.height * zoom), Image.Resampling.NEAREST)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
