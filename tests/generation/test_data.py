"""Image loading and serve-time resizing agree, so networks see uploads as they saw training files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from generation.data import box_resize, image_to_tensor, load_rgb
from generation.moco import Embedder, EmbedderConfig


@pytest.mark.parametrize(("side", "target"), [(64, 96), (64, 128), (64, 48), (64, 32), (100, 37), (37, 100)])
def test_box_resize_matches_the_loaders_box_filter_up_and_down(tmp_path, side, target):
    rng = np.random.default_rng(side * 1000 + target)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    loaded = image_to_tensor(load_rgb(path, target))  # [3, target, target] in [-1, 1]
    resized = box_resize(image_to_tensor(load_rgb(path, side))[None], target)[0]
    # Pillow rounds to 8 bits between its two passes: at most one grey level apart
    assert (resized - loaded).abs().max() <= 2 / 255 + 1e-6
    bilinear = torch.nn.functional.interpolate(
        image_to_tensor(load_rgb(path, side))[None], size=(target, target), mode="bilinear", antialias=True
    )[0]
    assert (bilinear - loaded).abs().max() > 0.1  # the filter this replaced did not agree


def test_box_resize_keeps_gradients_and_leaves_the_right_size_alone():
    images = torch.rand(2, 3, 20, 20, requires_grad=True)
    assert box_resize(images, 20) is images
    box_resize(images, 30).sum().backward()
    # each output pixel is a weighted mean of inputs, and enlarging reaches every input pixel
    assert images.grad.sum().item() == pytest.approx(2 * 3 * 30 * 30) and (images.grad > 0).all()


def test_c_embeds_a_small_image_as_it_embeds_the_file_loaded_at_its_side(tmp_path):
    torch.manual_seed(0)
    config = EmbedderConfig.for_preset("tiny").replace(resolution=48)
    embedder = Embedder(config).eval()
    path = tmp_path / "throat.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    from_small = embedder.embed(image_to_tensor(load_rgb(path, 32))[None])
    from_file = embedder.embed(image_to_tensor(load_rgb(path, 48))[None])
    assert torch.allclose(from_small, from_file, atol=1e-5)


def test_one_batched_sketch_conversion_white_to_one_ink_to_minus_one():
    from generation.data import sketch_to_tensor, sketches_to_tensor

    sketches = np.full((3, 8, 8), 255, np.uint8)
    sketches[1, 2:6, 4] = 0
    sketches[2, ::-1][0, :] = 128  # a strided view must convert too
    batch = sketches_to_tensor(sketches[:, ::-1])
    assert batch.shape == (3, 1, 8, 8) and batch.dtype == torch.float32
    assert batch[0].eq(1).all() and batch[1, 0, 2:6, 4].eq(-1).all() and float(batch[2, 0, 0, 0]) == pytest.approx(128 / 127.5 - 1, abs=1e-6)
    assert torch.equal(sketch_to_tensor(sketches[1]), batch[1].flip(-2))
