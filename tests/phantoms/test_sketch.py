"""Contour (synthesized) sketches: lines on the mask boundaries, nothing else, scaled widths."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from phantoms.sketch import contour_sketch, contour_sketch_from_masks, contour_thickness

SIZE = 256


def ellipse_mask(size: int, centre: tuple[int, int], axes: tuple[int, int], angle: float = 0.0) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
    return mask.astype(bool)


def scene_masks(size: int = SIZE) -> np.ndarray:
    """Four objects: two touching ellipses, one running off the bottom frame, one ring with a hole."""
    s = size / SIZE
    left = ellipse_mask(size, (int(80 * s), int(100 * s)), (int(40 * s), int(60 * s)), 15)
    right = ellipse_mask(size, (int(150 * s), int(100 * s)), (int(35 * s), int(50 * s))) & ~left
    tongue = ellipse_mask(size, (int(128 * s), int(280 * s)), (int(180 * s), int(100 * s)))
    ring = ellipse_mask(size, (int(200 * s), int(40 * s)), (int(30 * s), int(25 * s)))
    ring &= ~ellipse_mask(size, (int(200 * s), int(40 * s)), (int(12 * s), int(10 * s)))
    return np.stack([left, right, tongue, ring])  # [4, H, W]


def inner_frame(shape: tuple[int, int]) -> np.ndarray:
    frame = np.zeros(shape, dtype=bool)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    return frame


def boundary_pixels(masks: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside their mask, not on the image frame: [H, W] bool."""
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    boundary = np.zeros(masks.shape[1:], dtype=bool)
    for mask in masks:
        eroded = cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)
        boundary |= mask & ~eroded
    return boundary & ~inner_frame(boundary.shape)


def test_one_pixel_contours_are_exactly_the_mask_boundaries() -> None:
    masks = scene_masks()
    sketch = contour_sketch_from_masks(masks, thickness=1)
    assert sketch.dtype == np.uint8 and sketch.shape == (SIZE, SIZE)
    assert set(np.unique(sketch)) == {0, 255}
    np.testing.assert_array_equal(sketch == 0, boundary_pixels(masks))


def test_default_lines_are_two_pixels_at_256_and_stay_next_to_the_boundary() -> None:
    masks = scene_masks()
    sketch = contour_sketch_from_masks(masks)
    ink = sketch == 0
    boundary = boundary_pixels(masks)
    near_boundary = cv2.dilate(boundary.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not (ink & ~near_boundary).any()
    assert (boundary & ~ink).sum() == 0
    # a horizontal cut through the left ellipse's side crosses exactly 2 ink pixels
    row = sketch[100, :60]
    assert (row == 0).sum() == 2


def test_thickness_scales_with_image_size() -> None:
    assert contour_thickness(32) == 1
    assert contour_thickness(64) == 1
    assert contour_thickness(256) == 2
    assert contour_thickness(512) == 4
    for size, width in ((32, 1), (256, 2), (512, 4)):
        disk = ellipse_mask(size, (size // 2, size // 2), (size // 4, size // 4))[None]
        row = contour_sketch_from_masks(disk)[size // 2, : size // 2]  # crosses the disk's left edge
        assert (row == 0).sum() == width


def test_image_frame_is_not_drawn_but_holes_are() -> None:
    masks = scene_masks()
    sketch = contour_sketch_from_masks(masks, thickness=1)
    assert (sketch[-1, :] == 255).all() and (sketch[:, 0] == 255).all()
    hole_edge = sketch[40, 200 - 16 : 200 + 17]  # row through the ring and its hole (radius 12)
    assert (hole_edge == 0).sum() == 2  # both sides of the hole are outlined


def test_instance_map_sketch_equals_the_mask_stack_sketch() -> None:
    masks = scene_masks()
    instance_mask = np.zeros(masks.shape[1:], dtype=np.uint8)
    for instance_id, mask in zip((7, 3, 200, 12), masks):
        instance_mask[mask & (instance_mask == 0)] = instance_id
    np.testing.assert_array_equal(contour_sketch(instance_mask), contour_sketch_from_masks(masks))


@pytest.mark.parametrize(
    "masks",
    [np.zeros((2, 32, 32), bool), np.zeros((32, 32), bool), np.zeros((0, 32, 32), bool), np.ones((1, 8, 8), np.float32)],
)
def test_bad_masks_raise_clear_errors(masks: np.ndarray) -> None:
    with pytest.raises(ValueError):
        contour_sketch_from_masks(masks)


def test_blank_instance_map_and_zero_thickness_raise() -> None:
    with pytest.raises(ValueError, match="blank"):
        contour_sketch(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="thickness"):
        contour_sketch_from_masks(scene_masks(32), thickness=0)
