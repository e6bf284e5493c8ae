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


def test_frechet_with_fewer_samples_than_dimensions_equals_the_sqrtm_formula() -> None:
    from scipy import linalg

    rng = np.random.default_rng(4)
    a = rng.normal(size=(40, 64))
    b = rng.normal(loc=0.3, size=(30, 64)) @ rng.normal(size=(64, 64)) * 0.3
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(np.real(linalg.sqrtm(cov_a @ cov_b))))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    many = rng.normal(size=(100, 8))  # more samples than dimensions: the sqrtm path
    assert frechet_distance(many, many) == pytest.approx(0.0, abs=1e-6)


def test_mean_dice_is_100_for_identical_masks_0_for_disjoint_and_nan_for_nothing() -> None:
    from generation.quality_eval import mean_dice
    from generation.solov2.instances import Instance

    left, right = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    left[:, :4], right[:, 4:] = True, True
    tonsil, wall = Instance(3, 1.0, left), Instance(2, 1.0, right)
    assert mean_dice([tonsil, wall], [tonsil, wall]) == 100.0
    assert mean_dice([Instance(3, 1.0, right)], [tonsil]) == 0.0  # same class, disjoint pixels
    assert mean_dice([wall], [tonsil]) == 0.0  # each class only on one side
    assert np.isnan(mean_dice([], []))
