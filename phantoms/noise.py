"""Procedural texture fields: multi-octave value noise made by upsampling small random grids.

Upsampling low-resolution grids with OpenCV is what keeps rendering at tens of images per second:
one cubic resize per octave instead of per-pixel noise evaluation.
"""

from __future__ import annotations

import cv2
import numpy as np


def value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise with about `cells` features across the image, float32 [S, S], roughly N(0, 1)."""
    cells = max(2, min(cells, size // 2))
    grid = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def fractal_noise(rng: np.random.Generator, size: int, base_cells: int, octaves: int, persistence: float) -> np.ndarray:
    """Sum of `octaves` value-noise layers, each twice as fine and `persistence` times as strong.

    Normalised to unit standard deviation, float32 [S, S].
    """
    total = np.zeros((size, size), dtype=np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        total += amplitude * value_noise(rng, size, base_cells * 2**octave)
        amplitude *= persistence
    return total / max(float(total.std()), 1e-6)


def smoothstep(x: np.ndarray, edge0: float, edge1: float) -> np.ndarray:
    """0 below edge0, 1 above edge1, a smooth cubic ramp between (float32)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)
