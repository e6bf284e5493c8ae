"""FID, KID and SSIM on cases whose answers are known, and the pix2pix baseline learning on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation.metrics import (
    InceptionFeatures,
    KidConfig,
    frechet_distance,
    kernel_inception_distance,
    ssim,
)


def _smooth_images(count: int, seed: int, side: int = 32) -> torch.Tensor:
    """Blurred random colour fields in [-1, 1]: [count, 3, side, side]."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(count, 3, side // 4, side // 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(noise, size=(side, side), mode="bilinear", align_corners=False)


def test_fid_is_near_zero_for_identical_sets_and_large_for_different_ones() -> None:
    inception = InceptionFeatures(batch_size=12)
    photos = _smooth_images(12, seed=0)
    features = inception.embed(photos).numpy()
    assert features.shape == (12, 2048)
    same = frechet_distance(features, features)
    flat_grey = inception.embed(torch.zeros(12, 3, 32, 32) + 0.1 * _smooth_images(12, seed=1)).numpy()
    different = frechet_distance(features, flat_grey)
    assert abs(same) < 1e-2
    assert different > 10.0


def test_kid_is_about_zero_for_one_distribution_and_positive_for_shifted_one() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    shifted = rng.normal(loc=1.0, size=(400, 16))
    config = KidConfig(subsets=20, subset_size=200)
    same_mean, same_std = kernel_inception_distance(a, b, config)
    far_mean, _ = kernel_inception_distance(a, shifted, config)
    assert abs(same_mean) < 3 * same_std + 0.01
    assert far_mean > 0.5
    assert far_mean > 20 * abs(same_mean)


def test_ssim_is_one_for_identical_images_and_falls_with_noise() -> None:
    images = _smooth_images(3, seed=2)
    assert torch.allclose(ssim(images, images), torch.ones(3), atol=1e-5)
    generator = torch.Generator().manual_seed(3)
    slightly = (images + 0.05 * torch.randn(images.shape, generator=generator)).clamp(-1, 1)
    strongly = (images + 0.5 * torch.randn(images.shape, generator=generator)).clamp(-1, 1)
    light, heavy = ssim(images, slightly), ssim(images, strongly)
    assert (light < 0.999).all() and (heavy < light).all()
    assert (ssim(images, -images) < 0.2).all()  # inverted contrast shares no structure sign
    with pytest.raises(ValueError):
        ssim(images, images[:, :1])
