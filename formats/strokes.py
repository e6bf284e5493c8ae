"""Stroke sketches: polylines in normalised coordinates, rasterised into the Sketch format.

A browser or a tablet sends what the pen did rather than a picture: each stroke is a polyline of
points in [0, 1] x [0, 1] (x right, y down, of a square canvas), a width as a fraction of the
canvas side and, optionally, a pen pressure per point that scales the width there. Rasterising at
a fixed reference side gives a picture that `formats.sketch.canonical_sketch` then treats like any
uploaded drawing, so strokes and files reach the models the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from formats.errors import InputError
from formats.sketch import INK, REFERENCE_SIZE, WHITE

MAX_POINTS = 50_000  # all strokes together: a long drawing session stays far below
MAX_WIDTH = 0.2  # of the canvas side


class StrokeError(InputError):
    """Strokes that cannot be drawn (coordinates off the canvas, pressures not matching points, ...)."""


@dataclass(frozen=True)
class Stroke:
    """One pen stroke: points [(x, y), ...] in [0, 1], width as a fraction of the side, pressure in (0, 1] per point."""

    points: tuple[tuple[float, float], ...]
    width: float
    pressure: tuple[float, ...] | None = None

    def check(self) -> None:
        if not self.points:
            raise StrokeError("a stroke needs at least one point")
        if not 0 < self.width <= MAX_WIDTH:
            raise StrokeError(f"a stroke width is a fraction of the canvas in (0, {MAX_WIDTH}], got {self.width}")
        coordinates = np.asarray(self.points, dtype=np.float64)
        if coordinates.shape[1:] != (2,) or not np.isfinite(coordinates).all() or (coordinates < 0).any() or (coordinates > 1).any():
            raise StrokeError("stroke points are (x, y) pairs in normalised canvas coordinates, 0 to 1")
        if self.pressure is not None:
            pressure = np.asarray(self.pressure, dtype=np.float64)
            if len(pressure) != len(self.points) or not np.isfinite(pressure).all() or (pressure < 0).any() or (pressure > 1).any():
                raise StrokeError("a stroke's pressure has one value in [0, 1] per point")


def rasterise(strokes: list[Stroke], side: int = REFERENCE_SIZE) -> np.ndarray:
    """Strokes -> uint8 [side, side], white paper and black anti-aliased ink (no strokes: a blank page)."""
    if sum(len(stroke.points) for stroke in strokes) > MAX_POINTS:
        raise StrokeError(f"a sketch may have at most {MAX_POINTS} points in all")
    canvas = np.full((side, side), WHITE, dtype=np.uint8)
    scale = side - 1
    for stroke in strokes:
        stroke.check()
        points = np.asarray(stroke.points, dtype=np.float64) * scale
        pressure = np.ones(len(points)) if stroke.pressure is None else np.asarray(stroke.pressure, dtype=np.float64)
        for i in range(max(1, len(points) - 1)):
            j = min(i + 1, len(points) - 1)
            thickness = max(1, int(round(stroke.width * side * (pressure[i] + pressure[j]) / 2)))
            start = (int(round(points[i][0])), int(round(points[i][1])))
            end = (int(round(points[j][0])), int(round(points[j][1])))
            cv2.line(canvas, start, end, color=INK, thickness=thickness, lineType=cv2.LINE_AA)
    return canvas
