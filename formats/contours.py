"""The contour function: the outlines of instance masks as thin black lines on white (a Sketch).

This is the sketch the synthesizer S produces in the paper (contours of all predicted instance
masks), so there is exactly one drawing function, `contour_sketch_from_masks`, used by the phantom
tools and by S. Outline segments lying on the image frame are left out: where an object (the
tongue) runs off the picture, the frame is not an edge of the object and nobody draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from formats.masks import instance_ids
from formats.sketch import INK, WHITE

REFERENCE_SIZE = 256  # stroke widths of the Sketch format are stated at 256 px (DESIGN.md)
CONTOUR_THICKNESS_AT_REFERENCE = 2  # px at 256: the 1-2 px lines of a synthesized sketch


@dataclass(frozen=True)
class Outline:
    """One continuous piece of an object's boundary: pixel centres (x, y) in drawing order."""

    points: np.ndarray  # [K, 2] int, (x, y)
    closed: bool


def scaled_width(width_at_reference: float, size: int) -> float:
    """A stroke width given at 256 px, scaled to an image side of `size` px."""
    return width_at_reference * size / REFERENCE_SIZE


def contour_thickness(size: int) -> int:
    """The synthesized-sketch line width for an image side of `size` px (at least 1 px)."""
    return max(1, round(scaled_width(CONTOUR_THICKNESS_AT_REFERENCE, size)))


def _frame(shape: tuple[int, int]) -> np.ndarray:
    frame = np.zeros(shape, dtype=bool)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    return frame


def _split_at(points: np.ndarray, drop: np.ndarray) -> list[Outline]:
    """Cut a closed boundary [K, 2] wherever `drop` [K] is set; the kept runs become open outlines."""
    if not drop.any():
        return [Outline(points, closed=True)]
    first_dropped = int(np.argmax(drop))
    points = np.roll(points, -first_dropped, axis=0)
    drop = np.roll(drop, -first_dropped)
    outlines: list[Outline] = []
    run_start: int | None = None
    for index, dropped in enumerate(np.append(drop, True)):
        if not dropped and run_start is None:
            run_start = index
        elif dropped and run_start is not None:
            outlines.append(Outline(points[run_start:index], closed=False))
            run_start = None
    return outlines


def mask_outlines(mask: np.ndarray, exclude: np.ndarray | None = None) -> list[Outline]:
    """Boundary pieces of one binary mask [H, W], without points on the frame or in `exclude` [H, W].

    Holes are outlined too: an object seen through another has a boundary there.
    """
    binary = np.ascontiguousarray(mask != 0, dtype=np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    skip = _frame(binary.shape)
    if exclude is not None:
        skip |= exclude.astype(bool)
    outlines: list[Outline] = []
    for contour in contours:
        points = contour[:, 0, :]  # [K, 2] (x, y)
        outlines.extend(_split_at(points, skip[points[:, 1], points[:, 0]]))
    return outlines


def _check_masks(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be a stack [N, H, W] of binary masks, got shape {masks.shape}")
    if masks.dtype != bool and not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(f"masks must be bool or integer, got {masks.dtype}")
    if not masks.any():
        raise ValueError("no instance has any pixel: a blank sketch is an error, not a sketch")
    return masks


def contour_sketch_from_masks(masks: np.ndarray, thickness: int | None = None) -> np.ndarray:
    """Binary instance masks [N, H, W] -> Sketch uint8 [H, W]: every mask's outline in black on white.

    Lines are `thickness` px wide (default: 2 px at 256 px, scaled with the image side, at least 1).
    """
    masks = _check_masks(masks)
    height, width = masks.shape[1:]
    if thickness is None:
        thickness = contour_thickness(max(height, width))
    if thickness < 1:
        raise ValueError(f"thickness must be at least 1 px, got {thickness}")
    lines = np.zeros((height, width), dtype=np.uint8)  # 1 on an outline pixel
    for mask in masks:
        for outline in mask_outlines(mask):
            cv2.polylines(lines, [outline.points.astype(np.int32)], outline.closed, 1, 1, cv2.LINE_8)
    if thickness > 1:
        lines = cv2.dilate(lines, np.ones((thickness, thickness), dtype=np.uint8))
    return np.where(lines > 0, INK, WHITE).astype(np.uint8)


def contour_sketch(instance_mask: np.ndarray) -> np.ndarray:
    """Instance-id map [H, W] (0 = background) -> Sketch uint8 [H, W] of all instance outlines."""
    instance_mask = np.asarray(instance_mask)
    if instance_mask.ndim != 2:
        raise ValueError(f"an instance mask is one [H, W] id map, got shape {instance_mask.shape}")
    ids = instance_ids(instance_mask)
    masks = instance_mask[None, :, :] == ids[:, None, None]  # [N, H, W]
    return contour_sketch_from_masks(masks)
