"""Free-hand style augmentation of synthesized contour sketches, for training E and H.

The paper trains E and H on S's contour sketches only; a clinician's drawing is misaligned,
simplified, wobbly, broken, retraced, of any stroke width and drawn on a canvas of any size.
This transform makes a contour sketch look like that *at training time*, from the training
code's own model of drawing (not the phantom simulator that draws the evaluation queries), and
then canonicalises it exactly as every query is canonicalised (`formats.sketch`).

How: the ink is traced into polylines (`cv2.findContours` of each connected stroke), which are
simplified to few control points, moved (per-object drift, one global affine, a smooth
deformation field and a finer wobble field, both functions of position so that the two sides of
a one-pixel trace move together), redrawn anti-aliased at a random canvas size, stroke width and
ink grey, partly retraced beside themselves, broken by gaps, and read back through
`canonical_sketch` at the model resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from formats.sketch import INK_THRESHOLD, WHITE, SketchError, canonical_sketch

SUBPIXEL_BITS = 4
SUBPIXEL_SCALE = 1 << SUBPIXEL_BITS


@dataclass(frozen=True)
class SketchAugmentConfig:
    """Largest distortions; lengths are fractions of the sketch side, widths px at 256 px."""

    probability: float = 0.8  # share of training sketches augmented (the rest stay clean contours)
    shift: float = 0.05  # whole sketch against the photo
    scale: float = 0.08  # largest |s - 1| per axis
    rotation_deg: float = 5.0
    object_shift: float = 0.02  # one connected stroke against the others
    deformation: float = 0.02  # smooth field, wavelength about the side
    wobble: float = 0.008  # finer field, wavelength about a tenth of the side
    simplification: float = 0.02  # Douglas-Peucker tolerance
    omission: float = 0.08  # probability of leaving out one connected stroke
    retrace: float = 0.3  # probability that a stroke is drawn a second time beside itself
    retrace_offset: float = 0.012
    gaps: int = 4  # up to this many breaks per sketch
    gap_radius: float = 0.025
    stroke_width: tuple[float, float] = (1.0, 5.0)
    ink_grey: tuple[int, int] = (0, 110)
    canvas_sides: tuple[int, ...] = (64, 128, 256, 512)

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0 or not 0.0 <= self.omission <= 1.0 or not 0.0 <= self.retrace <= 1.0:
            raise ValueError("augmentation probabilities must lie in [0, 1]")
        if not self.canvas_sides or min(self.canvas_sides) < 16:
            raise ValueError("augmentation canvases must be at least 16 px")


FREEHAND_AUGMENT = SketchAugmentConfig()


def _strokes(sketch: np.ndarray) -> list[list[np.ndarray]]:
    """Sketch uint8 [R, R] -> per connected stroke, its traced polylines [K, 2] (x, y) in px."""
    ink = (sketch < INK_THRESHOLD).astype(np.uint8)
    count, labels = cv2.connectedComponents(ink, connectivity=8)
    out = []
    for label in range(1, count):
        contours, _ = cv2.findContours((labels == label).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        out.append([c[:, 0, :].astype(np.float64) for c in contours])
    return out


class _Field:
    """A smooth random displacement field: a sum of a few plane waves of one wavelength."""

    def __init__(self, rng: np.random.Generator, amplitude: float, wavelength: float, waves: int = 3) -> None:
        self.amplitude = rng.uniform(0.0, amplitude)
        angles = rng.uniform(0.0, 2.0 * math.pi, size=(2, waves))
        self.frequency = 2.0 * math.pi / wavelength * np.stack([np.cos(angles), np.sin(angles)], axis=-1)  # [2, W, 2]
        self.phase = rng.uniform(0.0, 2.0 * math.pi, size=(2, waves))
        self.waves = waves

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """points [K, 2] -> displacement [K, 2], at most `amplitude` in each axis."""
        waves = np.sin(np.einsum("kd,awd->kaw", points, self.frequency) + self.phase[None])  # [K, 2, W]
        return self.amplitude * waves.sum(-1) / self.waves


def _affine(rng: np.random.Generator, config: SketchAugmentConfig, side: float) -> np.ndarray:
    angle = math.radians(rng.uniform(-1.0, 1.0) * config.rotation_deg)
    scale = 1.0 + rng.uniform(-1.0, 1.0, size=2) * config.scale
    linear = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) @ np.diag(scale)
    centre = np.full(2, (side - 1) / 2.0)
    shift = rng.uniform(-1.0, 1.0, size=2) * config.shift * side
    return np.hstack([linear, (centre - linear @ centre + shift)[:, None]])


def freehand_augment(sketch: np.ndarray, rng: np.random.Generator,
                     config: SketchAugmentConfig = FREEHAND_AUGMENT) -> np.ndarray:
    """A contour Sketch uint8 [R, R] -> a free-hand looking canonical Sketch uint8 [R, R].

    Returns the input unchanged when the draw leaves nothing usable (every stroke left out or
    broken away), so that a training pair never becomes a blank sketch.
    """
    side = sketch.shape[0]
    strokes = _strokes(sketch)
    if not strokes:
        return sketch
    keep = rng.uniform(size=len(strokes)) >= config.omission
    if not keep.any():
        keep[int(rng.integers(len(strokes)))] = True
    affine = _affine(rng, config, side)
    deformation = _Field(rng, config.deformation * side, wavelength=side)
    wobble = _Field(rng, config.wobble * side, wavelength=side / 10.0)
    canvas_side = int(rng.choice(config.canvas_sides))
    zoom = canvas_side / side
    width = max(1, round(rng.uniform(*config.stroke_width) * canvas_side / 256.0))
    grey = int(rng.integers(config.ink_grey[0], config.ink_grey[1] + 1))
    canvas = np.full((canvas_side, canvas_side), WHITE, dtype=np.uint8)

    def draw(points: np.ndarray) -> None:
        moved = points + deformation(points) + wobble(points)
        moved = moved @ affine[:, :2].T + affine[:, 2]
        fixed = np.round((moved + 0.5) * zoom * SUBPIXEL_SCALE - 0.5 * SUBPIXEL_SCALE).astype(np.int32)
        cv2.polylines(canvas, [fixed[:, None, :]], True, grey, width, cv2.LINE_AA, SUBPIXEL_BITS)

    tolerance = rng.uniform(0.0, config.simplification) * side
    for polylines, kept in zip(strokes, keep):
        if not kept:
            continue
        drift = rng.uniform(-1.0, 1.0, size=2) * config.object_shift * side
        for points in polylines:
            if tolerance > 0 and len(points) > 3:
                points = cv2.approxPolyDP(points.astype(np.float32)[:, None, :], tolerance, True)[:, 0, :].astype(np.float64)
            draw(points + drift)
            if rng.uniform() < config.retrace:
                draw(points + drift + rng.uniform(-1.0, 1.0, size=2) * config.retrace_offset * side)
    ink = np.argwhere(canvas < INK_THRESHOLD)
    for _ in range(int(rng.integers(0, config.gaps + 1)) if len(ink) else 0):
        y, x = ink[int(rng.integers(len(ink)))]
        radius = max(1, round(rng.uniform(0.3, 1.0) * config.gap_radius * canvas_side))
        cv2.circle(canvas, (int(x), int(y)), radius, WHITE, -1)
    try:
        return canonical_sketch(canvas, side)
    except SketchError:
        return sketch


class SketchAugmenter:
    """The training-time transform: augments a share of the sketches it is given.

    Draws from numpy's generator seeded by torch's RNG, so a resumed run (whose torch RNG state
    is restored) augments its batches as an uninterrupted one does.
    """

    def __init__(self, config: SketchAugmentConfig = FREEHAND_AUGMENT) -> None:
        self.config = config

    def __call__(self, sketch: np.ndarray) -> np.ndarray:
        import torch

        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        if rng.uniform() >= self.config.probability:
            return sketch
        return freehand_augment(sketch, rng, self.config)
