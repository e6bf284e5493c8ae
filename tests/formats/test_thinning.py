"""`thin` is Zhang-Suen thinning: equal to the textbook pixel-by-pixel procedure, whatever its speed-ups."""

import cv2
import numpy as np
import pytest

from formats.sketch import thin


def textbook_zhang_suen(ink: np.ndarray) -> np.ndarray:
    """Zhang & Suen (1984) as the paper states it: two sub-iterations, each deciding every pixel from
    the same picture, until neither removes a pixel."""
    image = np.pad(ink.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            remove = []
            for y in range(1, image.shape[0] - 1):
                for x in range(1, image.shape[1] - 1):
                    if not image[y, x]:
                        continue
                    p = [image[y - 1, x], image[y - 1, x + 1], image[y, x + 1], image[y + 1, x + 1],
                         image[y + 1, x], image[y + 1, x - 1], image[y, x - 1], image[y - 1, x - 1]]
                    a = sum(1 for i in range(8) if p[i] == 0 and p[(i + 1) % 8] == 1)
                    if step == 0:
                        ok = p[0] * p[2] * p[4] == 0 and p[2] * p[4] * p[6] == 0
                    else:
                        ok = p[0] * p[2] * p[6] == 0 and p[0] * p[4] * p[6] == 0
                    if 2 <= sum(p) <= 6 and a == 1 and ok:
                        remove.append((y, x))
            for y, x in remove:
                image[y, x] = 0
            changed |= bool(remove)
        if not changed:
            return image[1:-1, 1:-1].astype(bool)


@pytest.mark.parametrize("seed", range(6))
def test_thin_equals_the_textbook_procedure_on_random_blobs_and_strokes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    blobs = rng.random((31, 29)) < rng.uniform(0.2, 0.8)
    strokes = np.zeros((48, 48), np.uint8)
    for _ in range(4):
        start, end = rng.integers(0, 48, 2), rng.integers(0, 48, 2)
        cv2.line(strokes, tuple(int(v) for v in start), tuple(int(v) for v in end), 1, int(rng.integers(1, 6)))
    for ink in (blobs, strokes.astype(bool)):
        assert np.array_equal(thin(ink), textbook_zhang_suen(ink))


def test_a_thick_stroke_becomes_a_one_pixel_line_of_its_length_and_no_ink_stays_none() -> None:
    ink = np.zeros((40, 60), bool)
    ink[15:24, 5:55] = True  # a bar 9 px thick
    lines = thin(ink)
    assert lines[:, 10:50].sum(axis=0).tolist() == [1] * 40
    assert not thin(np.zeros((8, 8), bool)).any()
