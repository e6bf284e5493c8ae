"""Contour (synthesized) sketches: lines on the mask boundaries, nothing else, scaled widths."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from formats.contours import contour_sketch, contour_sketch_from_masks, contour_thickness

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


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phantoms.dataset import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("phantoms") / "archive", count=3, size=64, seed=0)


def run_cli(*args: str) -> Result:
    from api.cli import app

    return CliRunner().invoke(app, ["phantom", *map(str, args)])


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_cli_writes_one_sketch_per_image_with_the_same_ids(phantom_dataset: Path, tmp_path: Path) -> None:
    ids = sorted(p.name for p in (phantom_dataset / "images").iterdir())
    result = run_cli("sketch", phantom_dataset, "--style", "contour", "--out", tmp_path / "contour")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "contour").iterdir()) == ids
    for name in ids:
        mask = read_png(phantom_dataset / "masks" / name)
        np.testing.assert_array_equal(read_png(tmp_path / "contour" / name), contour_sketch(mask))
    for run in ("a", "b"):
        result = run_cli("sketch", phantom_dataset, "--style", "freehand", "--seed", "4", "--out", tmp_path / run)
        assert result.exit_code == 0, result.output
    for name in ids:
        freehand = read_png(tmp_path / "a" / name)
        assert freehand.dtype == np.uint8 and freehand.ndim == 2 and (freehand < 128).any()
        np.testing.assert_array_equal(freehand, read_png(tmp_path / "b" / name))  # deterministic per seed and id
    first, second = (read_png(tmp_path / "a" / name) for name in ids[:2])
    assert (first != second).any()


def test_cli_rejects_bad_input_and_writes_nothing(phantom_dataset: Path, tmp_path: Path) -> None:
    bad_runs = [
        ("sketch", phantom_dataset, "--style", "watercolour", "--out", tmp_path / "out"),
        ("sketch", phantom_dataset, "--style", "freehand", "--drawer", "picasso", "--out", tmp_path / "out"),
        ("sketch", phantom_dataset, "--style", "freehand", "--abstraction", "1.5", "--out", tmp_path / "out"),
        ("sketch", tmp_path / "missing", "--out", tmp_path / "out"),
    ]
    for args in bad_runs:
        result = run_cli(*args)
        assert result.exit_code != 0
        assert not (tmp_path / "out").exists()


def test_preview_sheet_shows_photo_overlay_and_both_sketches(phantom_dataset: Path, tmp_path: Path) -> None:
    result = run_cli("preview", phantom_dataset, "-o", tmp_path / "sheet.png", "--count", "2")
    assert result.exit_code == 0, result.output
    sheet = read_png(tmp_path / "sheet.png")
    tile, gutter = 64, 4
    assert sheet.shape == (2 * (tile + gutter) + gutter, 4 * (tile + gutter) + gutter, 3)
    photo = sheet[gutter : gutter + tile, gutter : gutter + tile]
    overlay = sheet[gutter : gutter + tile, 2 * gutter + tile : 2 * (gutter + tile)]
    contour = sheet[gutter : gutter + tile, 3 * gutter + 2 * tile : 3 * (gutter + tile), 0]
    first_id = sorted((phantom_dataset / "images").iterdir())[0].name
    np.testing.assert_array_equal(photo, read_png(phantom_dataset / "images" / first_id))
    assert (overlay != photo).any()
    np.testing.assert_array_equal(contour, contour_sketch(read_png(phantom_dataset / "masks" / first_id)))
