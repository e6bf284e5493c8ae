"""The Sketch format: reading any picture, refusing non-sketches, and one canonical sketch per drawing."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt

from formats.sketch import BlankSketchError, SketchError, canonical_sketch, read_sketch
from generation.presets import SHIPPED_BUNDLE

SIDE = 64


@pytest.fixture(scope="module")
def masks(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    from phantoms.dataset import generate_dataset

    dataset = generate_dataset(tmp_path_factory.mktemp("sketch") / "ds", 2, SIDE, seed=4)
    return [np.asarray(Image.open(path)) for path in sorted((dataset / "masks").iterdir())]


def _drawn(mask: np.ndarray, side: int, width: int, anti_aliased: bool) -> np.ndarray:
    """The phantom's outlines drawn on a `side`-px canvas with `width`-px strokes (optionally soft and grey)."""
    from formats.contours import contour_sketch_from_masks
    from formats.masks import instance_ids

    big = cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST)
    sketch = contour_sketch_from_masks(np.stack([big == i for i in instance_ids(big)]), thickness=width)
    if anti_aliased:  # a soft pencil on off-white paper: grey, blurred, low contrast
        sketch = (120 + cv2.GaussianBlur(sketch.astype(np.float32), (0, 0), 0.7) / 255 * 115).astype(np.uint8)
    return sketch


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    ink_a, ink_b = a < 128, b < 128
    return float(distance_transform_edt(~ink_b)[ink_a].mean() + distance_transform_edt(~ink_a)[ink_b].mean())


def test_the_same_drawing_at_any_canvas_and_stroke_width_gives_the_same_canonical_sketch_and_w(masks) -> None:  # type: ignore[no-untyped-def]
    from generation.bundle import ENCODER, Bundle

    encoder = Bundle.open(SHIPPED_BUNDLE).load(ENCODER)

    def latent(sketch: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return encoder(torch.from_numpy(sketch).float().div(127.5).sub(1)[None, None])[0] - encoder.w_avg

    references = [canonical_sketch(_drawn(mask, SIDE, 1, False), SIDE) for mask in masks]
    other_cosine = float(torch.cosine_similarity(latent(references[0]), latent(references[1]), dim=0))
    # 4-6 px strokes on a 64-px canvas merge neighbouring outlines (16-24 px at 256): not the same drawing
    renderings = [(64, w) for w in (1, 2, 3)] + [(side, w) for side in (256, 512, 1024) for w in (1, 2, 3, 4, 5, 6)]
    for mask, reference in zip(masks, references):
        for side, width in renderings:
            for soft in (False, True):
                canonical = canonical_sketch(_drawn(mask, side, width, soft), SIDE)
                assert canonical.shape == (SIDE, SIDE) and set(np.unique(canonical)) <= {0, 255}
                assert _chamfer(canonical, reference) <= (0.9 if side == SIDE else 0.5), (side, width, soft)
                cosine = float(torch.cosine_similarity(latent(canonical), latent(reference), dim=0))
                assert cosine >= 0.93 and cosine > other_cosine + 0.1, (side, width, soft, cosine)


def test_canonicalisation_is_close_to_the_identity_on_synthesized_contours_and_idempotent(masks) -> None:  # type: ignore[no-untyped-def]
    from formats.contours import contour_sketch

    for mask in masks:
        contours = contour_sketch(mask)  # what E was trained on: 1-px outlines at 64 px
        canonical = canonical_sketch(contours, SIDE)
        assert _chamfer(canonical, contours) < 0.3
        assert np.array_equal(canonical_sketch(canonical, SIDE), canonical)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_blank_all_ink_and_unreadable_pictures_are_errors() -> None:
    with pytest.raises(BlankSketchError, match="blank"):
        canonical_sketch(np.full((100, 100), 255, np.uint8), SIDE)
    with pytest.raises(BlankSketchError, match="blank"):
        canonical_sketch(np.full((100, 100), 250, np.uint8) - np.eye(100, dtype=np.uint8) * 10, SIDE)  # 4% contrast
    with pytest.raises(SketchError, match="all ink"):
        canonical_sketch(np.zeros((100, 100), np.uint8), SIDE)
    inverted = np.zeros((100, 100), np.uint8)
    inverted[40:42, 10:90] = 255  # white lines on black
    with pytest.raises(SketchError, match="mostly ink"):
        canonical_sketch(inverted, SIDE)
    with pytest.raises(SketchError, match="readable"):
        canonical_sketch(b"not a picture", SIDE)
    with pytest.raises(SketchError, match="pixels"):
        canonical_sketch(np.full((300, 300), 255, np.uint8), SIDE, max_pixels=200 * 200)


def test_16_bit_float_rgba_and_exif_rotated_pictures_read_as_their_drawing(tmp_path: Path) -> None:
    drawing = np.full((80, 120), 255, np.uint8)
    drawing[10:14, 20:100] = 0  # a horizontal bar, off-centre
    expected = canonical_sketch(drawing, SIDE)
    sixteen = (drawing.astype(np.uint16) * 257).astype(np.uint16)  # full 16-bit range, not clipped to 255
    assert np.array_equal(canonical_sketch(_png(sixteen), SIDE), expected)
    assert read_sketch(_png(sixteen)).max() == pytest.approx(1.0)
    assert np.array_equal(canonical_sketch(drawing.astype(np.float32) / 255, SIDE), expected)
    assert np.array_equal(canonical_sketch(drawing.astype(np.float64) * 4 - 7, SIDE), expected)  # any float range
    rgba = np.zeros((80, 120, 4), np.uint8)
    rgba[..., 3] = 255 - drawing  # ink opaque black, paper transparent
    assert np.array_equal(canonical_sketch(_png(rgba), SIDE), expected)
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(drawing, k=1)))  # stored turned left; EXIF: turn right to display
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    path = tmp_path / "turned.jpg"
    rotated.save(path, exif=exif, quality=95)
    assert _chamfer(canonical_sketch(path, SIDE), expected) < 0.5


def _png_of_zeros(width: int, height: int) -> bytes:
    """A real, valid greyscale PNG of width x height black pixels (a few hundred KB, compressed as it streams)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\0" * (width + 1)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims width x height pixels."""
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 255).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("picture", ["png", "jpeg"])
def test_an_oversized_picture_is_refused_from_its_header_before_any_pixel_is_decoded(
    picture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _png_of_zeros(13000, 13000) if picture == "png" else _jpeg_claiming(13000, 13000)
    assert len(data) < 1_000_000
    decoded: list[str] = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.format) or real_load(self))
    with pytest.raises(SketchError, match=r"^the sketch has 169000000 pixels, more than the 16777216 allowed$"):
        read_sketch(data)
    assert decoded == []
    with pytest.raises(SketchError, match="more than the 1000 allowed"):
        canonical_sketch(_png_of_zeros(40, 30), 64, max_pixels=1000)
    assert decoded == []
