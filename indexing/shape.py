"""The shape channel: symmetric chamfer matching of stroke sets, written as one inner product.

For a query's strokes Q and an archive sketch's strokes A (binary maps, |.| their ink count) with
truncated distance transforms DT (distance to the nearest ink pixel, capped at `truncation` px),
the symmetric chamfer distance is

    d(Q, A) = Q . DT_A / |Q|  +  A . DT_Q / |A|
            = [Q / |Q|, DT_Q] . [DT_A, A / |A|].

The archive side `[DT_A, A / |A|]` is fixed per image, so FAISS searches chamfer exactly with an
inner product: the query vector carries a minus sign, so a larger score is a closer shape
(score = -d, 0 for identical stroke sets). The channel is asymmetric (the two sides differ), so it
is not L2-normalised: normalising either side would no longer be chamfer. The truncation keeps
one missing or stray stroke from dominating, and gives an empty sketch a finite, worst distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from formats.sketch import INK_THRESHOLD


@dataclass(frozen=True)
class ShapeConfig:
    """Side of the stroke maps (the model resolution) and the distance-transform cap in px."""

    side: int = 64
    truncation: float = 8.0

    def __post_init__(self) -> None:
        if self.side < 2:
            raise ValueError(f"shape side must be at least 2 px, got {self.side}")
        if self.truncation <= 0:
            raise ValueError(f"shape truncation must be positive, got {self.truncation}")

    @property
    def dim(self) -> int:
        return 2 * self.side * self.side


def ink_map(sketch: np.ndarray, config: ShapeConfig) -> np.ndarray:
    """Sketch uint8 [side, side] -> bool [side, side], True on strokes."""
    if sketch.shape != (config.side, config.side):
        raise ValueError(f"shape vectors need a {config.side} px sketch, got {sketch.shape}")
    return sketch < INK_THRESHOLD


def truncated_distance(ink: np.ndarray, config: ShapeConfig) -> np.ndarray:
    """bool [H, W] -> float32 [H, W]: distance to the nearest ink pixel, capped (all cap if no ink).

    OpenCV's exact Euclidean transform (DIST_MASK_PRECISE: scipy's `distance_transform_edt` to 1e-5 px;
    the chamfer test checks it against point-set distances) at a quarter of its cost: a cold re-rank
    computes one per candidate."""
    if not ink.any():
        return np.full(ink.shape, config.truncation, dtype=np.float32)
    distance = cv2.distanceTransform((~ink).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.minimum(distance, config.truncation)


def _unit_ink(ink: np.ndarray) -> np.ndarray:
    count = int(ink.sum())
    return (ink.ravel() / count).astype(np.float32) if count else np.zeros(ink.size, dtype=np.float32)


def archive_vector(sketch: np.ndarray, config: ShapeConfig) -> np.ndarray:
    """An archive sketch -> float32 [2 * side^2] = [DT_A, A / |A|]."""
    ink = ink_map(sketch, config)
    return np.concatenate([truncated_distance(ink, config).ravel(), _unit_ink(ink)])


def query_vector(sketch: np.ndarray, config: ShapeConfig) -> np.ndarray:
    """A query sketch -> float32 [2 * side^2] = -[Q / |Q|, DT_Q]; its inner product with an
    archive vector is minus the symmetric truncated chamfer distance."""
    ink = ink_map(sketch, config)
    return -np.concatenate([_unit_ink(ink), truncated_distance(ink, config).ravel()])


def archive_vectors(sketches: np.ndarray, config: ShapeConfig) -> np.ndarray:
    """uint8 [N, side, side] -> float32 [N, 2 * side^2]."""
    return np.stack([archive_vector(sketch, config) for sketch in sketches]) if len(sketches) else np.zeros((0, config.dim), np.float32)


def query_vectors(sketches: np.ndarray, config: ShapeConfig) -> np.ndarray:
    """uint8 [N, side, side] -> float32 [N, 2 * side^2]."""
    return np.stack([query_vector(sketch, config) for sketch in sketches]) if len(sketches) else np.zeros((0, config.dim), np.float32)
