"""Free-hand sketch simulator: ink stays within the stated bounds, differs from the contour, varies."""

from __future__ import annotations

import dataclasses
import math
import time

import cv2
import numpy as np
import pytest

from formats.categories import PHARYNGEAL_WALL, TONGUE, TONSIL, UVULA
from phantoms.freehand import (
    DISTORTION_BOUNDS,
    DRAWER_STYLES,
    FreehandDrawer,
    drawer_style,
    freehand_sketch,
    sketch_seed,
)
from formats.contours import contour_sketch, contour_sketch_from_masks
from formats.masks import instance_ids

ABSTRACTIONS = (0.0, 0.5, 1.0)


def throat_mask(size: int) -> tuple[np.ndarray, dict[int, int]]:
    """An instance-id map [S, S] laid out like a throat photo, and its categories."""
    s = size / 256

    def px(value: float) -> int:
        return int(round(value * s))

    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.ellipse(mask, (px(128), px(150)), (px(80), px(110)), 0, 180, 360, 1, -1)  # wall, an arch
    cv2.rectangle(mask, (px(48), px(150)), (px(208), px(200)), 1, -1)
    cv2.ellipse(mask, (px(75), px(150)), (px(28), px(45)), 8, 0, 360, 2, -1)  # tonsils
    cv2.ellipse(mask, (px(181), px(150)), (px(28), px(45)), -8, 0, 360, 3, -1)
    cv2.ellipse(mask, (px(128), px(95)), (px(12), px(28)), 0, 0, 360, 4, -1)  # uvula
    cv2.ellipse(mask, (px(128), px(290)), (px(170), px(110)), 0, 0, 360, 5, -1)  # tongue, off the frame
    return mask, {1: PHARYNGEAL_WALL, 2: TONSIL, 3: TONSIL, 4: UVULA, 5: TONGUE}


def outline_distance(instance_mask: np.ndarray) -> np.ndarray:
    """Distance (px) of every pixel [S, S] from the nearest true outline pixel."""
    ids = instance_ids(instance_mask)
    outline = contour_sketch_from_masks(instance_mask[None] == ids[:, None, None], thickness=1)
    return cv2.distanceTransform((outline > 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def ink(sketch: np.ndarray) -> np.ndarray:
    return sketch < 255


@pytest.mark.parametrize("size", [64, 256])
def test_all_ink_stays_within_the_distortion_bound_for_every_drawer(size: int) -> None:
    mask, categories = throat_mask(size)
    distance = outline_distance(mask)
    for index, style in enumerate(DRAWER_STYLES):
        for abstraction in ABSTRACTIONS:
            sketch = freehand_sketch(mask, categories, seed=index, abstraction=abstraction, style=style)
            assert sketch.dtype == np.uint8 and sketch.shape == mask.shape
            assert ink(sketch).any()
            assert distance[ink(sketch)].max() <= DISTORTION_BOUNDS.max_ink_distance(abstraction, size)


def test_misalignment_stays_within_shift_scale_and_rotation_bounds() -> None:
    size, style = 256, dataclasses.replace(DRAWER_STYLES[0], misalignment=1.0)
    for abstraction in ABSTRACTIONS:
        angles, scales, shifts = [], [], []
        for seed in range(200):
            affine = FreehandDrawer(style, abstraction, size, np.random.default_rng(seed)).affine  # [2, 3]
            linear = affine[:, :2]
            angle = math.degrees(math.atan2(linear[1, 0], linear[0, 0]))
            scale = np.linalg.norm(linear, axis=0)  # per-axis scale (columns of R @ diag(s))
            centre = np.full(2, (size - 1) / 2.0)
            shift = np.linalg.norm(affine @ np.append(centre, 1.0) - centre) / size
            angles.append(abs(angle)), scales.append(np.abs(scale - 1).max()), shifts.append(shift)
        assert max(angles) <= DISTORTION_BOUNDS.max_rotation_deg(abstraction) + 1e-9
        assert max(scales) <= DISTORTION_BOUNDS.max_scale(abstraction) + 1e-9
        assert max(shifts) <= DISTORTION_BOUNDS.max_shift(abstraction) + 1e-9
        # the bounds are used, not just respected
        assert max(angles) > 0.8 * DISTORTION_BOUNDS.max_rotation_deg(abstraction)
        assert max(shifts) > 0.8 * DISTORTION_BOUNDS.max_shift(abstraction)


def test_without_misalignment_strokes_stay_within_the_local_bound() -> None:
    size = 256
    mask, categories = throat_mask(size)
    distance = outline_distance(mask)
    for style in DRAWER_STYLES:
        aligned = dataclasses.replace(style, misalignment=0.0)
        for abstraction in ABSTRACTIONS:
            sketch = freehand_sketch(mask, categories, seed=3, abstraction=abstraction, style=aligned)
            widest = DISTORTION_BOUNDS.stroke_width[1] / 2 + DISTORTION_BOUNDS.antialias_px + 1
            limit = DISTORTION_BOUNDS.max_local_distance(abstraction) * size + widest
            assert distance[ink(sketch)].max() <= limit


def test_freehand_differs_from_the_contour_and_more_so_when_abstract() -> None:
    size = 256
    mask, categories = throat_mask(size)
    distance = outline_distance(mask)
    contour_ink = ink(contour_sketch(mask))
    mean_distance = {}
    for abstraction in ABSTRACTIONS:
        distances = []
        for seed in range(12):
            sketch_ink = ink(freehand_sketch(mask, categories, seed=seed, abstraction=abstraction))
            on_contour = (sketch_ink & contour_ink).sum() / sketch_ink.sum()
            assert on_contour < 0.9, "a free-hand sketch must not retrace the contour"
            distances.append(distance[sketch_ink].mean())
        mean_distance[abstraction] = float(np.mean(distances))
    assert mean_distance[0.0] < 2.0  # close to the contour when careful
    assert mean_distance[0.5] > mean_distance[0.0] + 1.0
    assert mean_distance[1.0] > mean_distance[0.5] + 1.0


def test_same_seed_same_sketch_other_seed_other_sketch() -> None:
    mask, categories = throat_mask(128)
    first = freehand_sketch(mask, categories, seed=11)
    np.testing.assert_array_equal(first, freehand_sketch(mask, categories, seed=11))
    assert (first != freehand_sketch(mask, categories, seed=12)).mean() > 0.01
    assert sketch_seed(0, "case-1") == sketch_seed(0, "case-1") != sketch_seed(0, "case-2") != sketch_seed(1, "case-1")


def test_twelve_distinct_drawer_styles() -> None:
    names = [style.name for style in DRAWER_STYLES]
    assert len(names) == 12 == len(set(names))
    assert drawer_style("shaky_hand").name == "shaky_hand"
    assert all(DISTORTION_BOUNDS.stroke_width[0] <= s.stroke_width <= DISTORTION_BOUNDS.stroke_width[1] for s in DRAWER_STYLES)
    mask, categories = throat_mask(256)
    sketches = [freehand_sketch(mask, categories, seed=5, abstraction=0.5, style=style) for style in DRAWER_STYLES]
    ink_amounts = [ink(s).sum() for s in sketches]
    assert max(ink_amounts) > 2 * min(ink_amounts)  # thin pencil against heavy marker
    assert len({s.tobytes() for s in sketches}) == 12


def test_objects_are_sometimes_left_out_but_never_all() -> None:
    mask, categories = throat_mask(128)
    always = dataclasses.replace(DRAWER_STYLES[0], omission=1.0)
    never = dataclasses.replace(DRAWER_STYLES[0], omission=0.0)
    uvula = mask == 4
    uvula_zone = cv2.dilate(uvula.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    uvula_inside = cv2.erode(uvula.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    uvula_ring = uvula_zone & ~uvula_inside
    drawn = [ink(freehand_sketch(mask, categories, seed=s, abstraction=0.0, style=never))[uvula_ring].any() for s in range(10)]
    assert all(drawn)
    for seed in range(10):
        assert ink(freehand_sketch(mask, categories, seed=seed, style=always)).any()
    minimalist = drawer_style("minimalist")
    counts = [ink(freehand_sketch(mask, categories, seed=s, style=minimalist))[uvula_ring].sum() for s in range(40)]
    assert 0 < sum(c == 0 for c in counts) < 40


def test_sketch_speed_at_256() -> None:
    mask, categories = throat_mask(256)
    freehand_sketch(mask, categories, seed=0)
    start = time.process_time()  # CPU time: other jobs on the machine do not count
    for seed in range(10):
        freehand_sketch(mask, categories, seed=seed)
    assert (time.process_time() - start) / 10 < 0.05


@pytest.mark.parametrize(
    ("categories", "abstraction", "message"),
    [
        ({1: 2, 2: 3, 3: 3, 4: 1}, None, "no category"),
        ({1: 2, 2: 3, 3: 3, 4: 1, 5: 9}, None, "unknown category"),
        ({1: 2, 2: 3, 3: 3, 4: 1, 5: 4}, 1.5, "abstraction"),
    ],
)
def test_bad_input_raises_a_clear_error(categories: dict[int, int], abstraction: float | None, message: str) -> None:
    mask, _ = throat_mask(64)
    with pytest.raises(ValueError, match=message):
        freehand_sketch(mask, categories, seed=0, abstraction=abstraction)


def test_blank_mask_and_bad_styles_are_rejected() -> None:
    with pytest.raises(ValueError, match="blank"):
        freehand_sketch(np.zeros((64, 64), np.uint8), {}, seed=0)
    with pytest.raises(ValueError, match="wobble"):
        dataclasses.replace(DRAWER_STYLES[0], wobble=1.5)
    with pytest.raises(ValueError, match="unknown drawer style"):
        drawer_style("picasso")


def test_rendered_phantoms_sketch_within_bounds_and_unlike_their_contours() -> None:
    from phantoms.render import render_case

    size = 128
    for index in range(3):
        case = render_case(seed=0, index=index, size=size)
        categories = {instance.instance_id: instance.category_id for instance in case.instances}
        distance = outline_distance(case.instance_mask)
        contour_ink = ink(contour_sketch(case.instance_mask))
        for abstraction in ABSTRACTIONS:
            sketch = ink(freehand_sketch(case.instance_mask, categories, seed=index, abstraction=abstraction))
            assert distance[sketch].max() <= DISTORTION_BOUNDS.max_ink_distance(abstraction, size)
            assert (sketch & contour_ink).sum() < 0.9 * sketch.sum()


def test_a_sketch_is_never_blank_and_tiny_objects_are_an_error() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 10:40] = 1
    mask[50, 50] = 2  # too small to draw
    always = dataclasses.replace(DRAWER_STYLES[0], omission=1.0)
    for seed in range(10):  # whichever object the drawer keeps, something is drawn
        assert ink(freehand_sketch(mask, {1: TONSIL, 2: UVULA}, seed=seed, style=always)).any()
    with pytest.raises(ValueError, match="too short"):
        freehand_sketch((mask == 2).astype(np.uint8) * 2, {2: UVULA}, seed=0)
