"""The Sketch format (DESIGN.md): single-channel uint8, white (255) background, black (0) strokes, square.

`normalize_sketch` turns any sketch picture into it; a blank sketch is an error, not a query.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from formats.errors import InputError
from formats.images import resize_area

WHITE = 255
INK = 0
INK_THRESHOLD = 128  # a pixel darker than this is ink
MIN_INK_PIXELS = 8


class BlankSketchError(InputError):
    """A sketch with no strokes: an error, not a query."""


def normalize_sketch(image: Image.Image | np.ndarray, resolution: int, min_ink: int = MIN_INK_PIXELS) -> np.ndarray:
    """Any sketch picture -> the Sketch format: uint8 [R, R], white 255 background, dark strokes.

    RGBA is composited over white, colour converted to grey, a non-square canvas padded with white
    to a square, then area-resized. Raises BlankSketchError if fewer than `min_ink` dark pixels.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (WHITE, WHITE, WHITE, 255))
        image = Image.alpha_composite(canvas, rgba)
    grey = image.convert("L")
    width, height = grey.size
    if width != height:
        side = max(width, height)
        square = Image.new("L", (side, side), WHITE)
        square.paste(grey, ((side - width) // 2, (side - height) // 2))
        grey = square
    ink_before = int((np.asarray(grey) < INK_THRESHOLD).sum())
    if ink_before < min_ink:
        raise BlankSketchError("the sketch is blank: draw the outlines of the uvula, wall, tonsils and tongue")
    return np.asarray(resize_area(grey, resolution), dtype=np.uint8)
