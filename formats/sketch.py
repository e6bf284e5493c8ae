"""The Sketch format (DESIGN.md): reading any sketch picture and canonicalising it for the models.

Reading (`read_sketch`) accepts what a user or a drawing app hands in: PNG/JPEG/... bytes, a file,
a PIL image or an array; EXIF orientation is applied, alpha is composited over white, 16-bit and
float pictures are scaled to [0, 1] (not clipped), colour becomes luminance, and a non-square
canvas is padded with white to a square. It never loads a model, so every consumer checks its
sketches before the networks.

Canonicalising (`canonical_sketch`) makes the picture independent of how it was drawn:
1. ink is separated from paper by the picture's own contrast (Otsu's threshold between its paper
   and ink levels), so faint, grey, anti-aliased or low-contrast strokes all become ink;
2. the ink is thinned to its one-pixel centre lines (Zhang-Suen), which removes stroke width;
3. the centre lines are redrawn at the model resolution: each centre-line pixel marks the model
   pixel it falls in, and the marks are thinned again to 8-connected one-pixel strokes, the
   width of the contours S draws at the small preset (`CANONICAL_WIDTH_AT_REFERENCE`).
A 64-px synthesized contour sketch is already in that form, so canonicalisation is close to the
identity on what E was trained on, while a 512-px drawing area-resized to 64 px no longer reaches
E as faint grey lines. A blank or all-ink picture is an error, not a query.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from formats.errors import InputError

WHITE = 255
INK = 0
INK_THRESHOLD = 128  # a pixel darker than this is ink (in the canonical, black-and-white form)
REFERENCE_SIZE = 256  # stroke widths are stated at 256 px (as the contour function states them)
CANONICAL_WIDTH_AT_REFERENCE = 2  # px at 256 px: 1 px at 64, the synthesized sketches' width
MIN_CONTRAST = 0.1  # ink must be this much darker than paper (fraction of the full range)
MIN_INK_FRACTION = 1e-4  # less ink than this share of the canvas is a blank sketch
MAX_INK_FRACTION = 0.6  # more is not a line drawing (an all-ink or inverted picture)
MAX_SKETCH_PIXELS = 4096 * 4096
OTSU_BINS = 256


class SketchError(InputError):
    """A picture that is not a usable sketch (unreadable, blank, all ink); the message says which."""


class BlankSketchError(SketchError):
    """A sketch with no strokes: an error, not a query."""


def _too_many(pixels: int, max_pixels: int) -> SketchError:
    return SketchError(f"the sketch has {pixels} pixels, more than the {max_pixels} allowed")


def _open(source: bytes | Path | str | Image.Image, max_pixels: int) -> Image.Image:
    """The picture, its size checked from the header before a single pixel is decoded (a 13000 x
    13000 PNG of a few hundred KB is refused for free instead of costing half a gigabyte)."""
    if isinstance(source, Image.Image):
        return source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
            image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else Path(source))
        if image.width * image.height > max_pixels:
            image.close()
            raise _too_many(image.width * image.height, max_pixels)
        image.load()
    except FileNotFoundError as error:
        raise SketchError(f"no sketch file at {source}") from error
    except Image.DecompressionBombError:
        raise SketchError(f"the sketch has more pixels than the {max_pixels} allowed") from None
    except (OSError, ValueError) as error:
        if isinstance(error, SketchError):
            raise
        raise SketchError("the sketch is not a readable picture (PNG, JPEG, ...)") from error
    return image


def _scaled(array: np.ndarray) -> np.ndarray:
    """Any numeric array -> float32 in [0, 1]: integers by their type's range, floats by their own."""
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        top = float(info.max)
        if array.dtype.itemsize > 1 and array.size and array.max() <= WHITE:
            top = float(WHITE)  # an 8-bit picture widened to a bigger type (PIL's "I" mode)
        return (array.astype(np.float32) - max(info.min, 0)) / (top - max(info.min, 0))
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise SketchError("the sketch holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return values
    if high == low:
        return np.ones_like(values)
    return (values - low) / (high - low)


def _grey_from_pil(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (WHITE, WHITE, WHITE, WHITE))
        return np.asarray(Image.alpha_composite(canvas, rgba).convert("L"), dtype=np.float32) / WHITE
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16).astype(np.float32) / np.iinfo(np.uint16).max
    if image.mode in ("I", "F"):
        return _scaled(np.asarray(image))
    return np.asarray(image.convert("L"), dtype=np.float32) / WHITE


def _grey_from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] in (3, 4):
        values = _scaled(array)
        rgb, alpha = values[..., :3], values[..., 3:4] if array.shape[2] == 4 else 1.0
        rgb = rgb * alpha + (1.0 - alpha)  # alpha over white
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if array.ndim == 2:
        return _scaled(array)
    raise SketchError(f"a sketch array must be [H, W], [H, W, 3] or [H, W, 4], got shape {array.shape}")


def read_sketch(source: bytes | Path | str | Image.Image | np.ndarray, max_pixels: int = MAX_SKETCH_PIXELS) -> np.ndarray:
    """Any sketch picture -> float32 [S, S] in [0, 1] (1 = paper), square, orientation applied."""
    if isinstance(source, np.ndarray):
        grey = _grey_from_array(source)
    else:
        image = _open(source, max_pixels)
        if image.width * image.height > max_pixels:  # a PIL image handed in as it is
            raise _too_many(image.width * image.height, max_pixels)
        grey = _grey_from_pil(image)
    height, width = grey.shape
    if height == 0 or width == 0:
        raise SketchError("the sketch has no pixels")
    if height * width > max_pixels:
        raise _too_many(height * width, max_pixels)
    if height != width:
        side = max(height, width)
        square = np.ones((side, side), dtype=np.float32)
        top, left = (side - height) // 2, (side - width) // 2
        square[top : top + height, left : left + width] = grey
        grey = square
    return grey


def ink_mask(grey: np.ndarray) -> np.ndarray:
    """float [S, S] in [0, 1] -> bool [S, S], True on ink, by the picture's own paper/ink contrast."""
    low, high = float(grey.min()), float(grey.max())
    if high - low < MIN_CONTRAST and low < 0.5:
        raise SketchError("the sketch is all ink: draw dark outlines on a light background")
    if high - low < MIN_CONTRAST:
        raise BlankSketchError("the sketch is blank: draw the outlines of the uvula, wall, tonsils and tongue")
    levels = np.round((grey - low) / (high - low) * (OTSU_BINS - 1)).astype(np.uint8)
    threshold, _ = cv2.threshold(levels, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = levels <= threshold
    share = float(ink.mean())
    if share < MIN_INK_FRACTION:
        raise BlankSketchError("the sketch is blank: draw the outlines of the uvula, wall, tonsils and tongue")
    if share > MAX_INK_FRACTION:
        raise SketchError("the sketch is mostly ink: draw dark outlines on a light background")
    return ink


# Zhang-Suen thinning: neighbours P2..P9 clockwise from north, as offsets (dy, dx).
_NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def _removable(step: int) -> np.ndarray:
    """bool [256]: whether a pixel whose neighbours P2..P9 are bits 0..7 of the index goes in `step`."""
    table = np.zeros(256, dtype=bool)
    for code in range(256):
        n = [(code >> bit) & 1 for bit in range(8)]
        transitions = sum(1 for i in range(8) if n[i] == 0 and n[(i + 1) % 8] == 1)
        p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
        first, second = (p2 * p4 * p6, p4 * p6 * p8) if step == 0 else (p2 * p4 * p8, p2 * p6 * p8)
        table[code] = 2 <= sum(n) <= 6 and transitions == 1 and first == 0 and second == 0
    return table


_REMOVABLE = (_removable(0), _removable(1))


def thin(ink: np.ndarray) -> np.ndarray:
    """bool [H, W] -> its one-pixel centre lines (Zhang & Suen 1984).

    Each sub-iteration looks only at the pixels still inked (a flat index list into the padded
    image) and decides them by a 256-entry table of their neighbourhood code, so the cost follows
    the ink, not the canvas: a 1024 px drawing thins in about 12 ms rather than 230 ms."""
    height, width = ink.shape
    image = np.pad(ink.astype(np.uint8), 1).ravel()
    stride = width + 2
    offsets = [dy * stride + dx for dy, dx in _NEIGHBOURS]
    alive = np.flatnonzero(image)
    while True:
        changed = False
        for step in (0, 1):
            code = np.zeros(len(alive), dtype=np.uint8)
            for bit, offset in enumerate(offsets):
                code |= image[alive + offset] << bit
            remove = _REMOVABLE[step][code]
            if remove.any():
                image[alive[remove]] = 0
                alive = alive[~remove]
                changed = True
        if not changed:
            return image.reshape(height + 2, stride)[1:-1, 1:-1].astype(bool)


def canonical_width(resolution: int) -> int:
    return max(1, round(CANONICAL_WIDTH_AT_REFERENCE * resolution / REFERENCE_SIZE))


def redraw(centre_lines: np.ndarray, resolution: int) -> np.ndarray:
    """Centre lines bool [S, S] -> Sketch uint8 [R, R]: strokes of the canonical width at R px."""
    side = centre_lines.shape[0]
    ys, xs = np.nonzero(centre_lines)
    marks = np.zeros((resolution, resolution), dtype=bool)
    marks[(ys * resolution) // side, (xs * resolution) // side] = True
    lines = thin(marks) if side != resolution else marks
    width = canonical_width(resolution)
    if width > 1:
        lines = cv2.dilate(lines.astype(np.uint8), np.ones((width, width), np.uint8)).astype(bool)
    return np.where(lines, INK, WHITE).astype(np.uint8)


def canonical_sketch(source: bytes | Path | str | Image.Image | np.ndarray, resolution: int,
                     max_pixels: int = MAX_SKETCH_PIXELS) -> np.ndarray:
    """Any sketch picture -> the canonical Sketch uint8 [R, R] the models read (white paper, black strokes)."""
    return redraw(thin(ink_mask(read_sketch(source, max_pixels))), resolution)


@dataclass(frozen=True, eq=False)
class CanonicalSketch:
    """A sketch already canonical at its resolution (uint8 [R, R]), made by `CanonicalSketch.of`.

    Whoever holds one passes it on: the query engine and the pipeline read its pixels and never
    canonicalise it again (canonicalising is the costliest step of a query's sketch stage)."""

    pixels: np.ndarray

    @classmethod
    def of(cls, source: bytes | Path | str | Image.Image | np.ndarray, resolution: int,
           max_pixels: int = MAX_SKETCH_PIXELS) -> "CanonicalSketch":
        """Read and canonicalise any sketch picture at `resolution`; SketchError on bad input."""
        return cls(canonical_sketch(source, resolution, max_pixels))

    @property
    def resolution(self) -> int:
        return int(self.pixels.shape[0])
