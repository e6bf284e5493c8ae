"""Stroke sketches rasterised into the Sketch format (what the sketch pad sends as JSON)."""

from __future__ import annotations

import numpy as np
import pytest

from formats.sketch import canonical_sketch
from formats.strokes import Stroke, StrokeError, rasterise


def test_a_polyline_is_drawn_where_its_points_are_and_pressure_scales_the_width() -> None:
    line = ((0.1, 0.5), (0.9, 0.5))
    light = rasterise([Stroke(line, 0.04, (0.25, 0.25))])
    firm = rasterise([Stroke(line, 0.04, (1.0, 1.0))])
    assert light.shape == (256, 256) and light.dtype == np.uint8
    rows = np.nonzero((firm < 128).any(axis=1))[0]
    assert abs(rows.mean() - 0.5 * 255) < 2  # a horizontal line through the middle
    assert (firm < 128).sum() > 2 * (light < 128).sum()  # four times the pressure, a much wider line
    assert (rasterise([Stroke(((0.2, 0.2),), 0.02)]) < 128).any()  # a single point is a dot
    canonical = canonical_sketch(firm, 64)
    assert canonical.shape == (64, 64) and (canonical < 128).any()


@pytest.mark.parametrize("stroke", [
    Stroke(((0.5, 1.2),), 0.01),
    Stroke(((float("nan"), 0.5),), 0.01),
    Stroke(((0.5, 0.5),), 0.0),
    Stroke(((0.5, 0.5),), 0.5),
    Stroke(((0.5, 0.5), (0.6, 0.6)), 0.01, (1.0,)),
    Stroke((), 0.01),
])
def test_strokes_off_the_canvas_or_malformed_are_refused(stroke: Stroke) -> None:
    with pytest.raises(StrokeError):
        rasterise([stroke])
