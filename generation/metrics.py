"""Image-set quality metrics: the Fréchet distance between two feature sets, and its feature extractors.

No pretrained Inception network exists offline, so this is not FID. The features come from the
domain MoCo embedder C when a bundle has one ("moco-embedder"), else from a fixed-seed, randomly
initialised, untrained conv net ("random-conv"); every reported number names which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from generation.bundle import EMBEDDER, Bundle, BundleError, is_bundle

RANDOM_CONV_NAME = "random-conv"
MOCO_NAME = "moco-embedder"


class FeatureExtractor(Protocol):
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, D]."""
        ...


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two [N, D] feature sets.

    `eps` is added to the covariance diagonals only when their product has no finite square root.
    """
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [N, D] with the same D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("each feature set needs at least 2 samples for a covariance")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("feature sets contain NaN or infinite values")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = np.eye(a.shape[1]) * eps
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


@dataclass(frozen=True)
class RandomConvFeaturesConfig:
    """An untrained conv net: stride-2 3x3 convs of these widths, then mean and std pooling."""

    channels: tuple[int, ...] = (32, 64, 128)
    seed: int = 0
    lrelu_slope: float = 0.2
    batch_size: int = 256


class RandomConvFeatures(nn.Module):
    """A fixed-seed, randomly initialised, untrained conv net used as a Fréchet feature extractor.

    It is only a stand-in where no trained embedder exists: its distances rank image sets by
    low-level statistics (colour, texture, layout), not by learned semantics.
    """

    name = RANDOM_CONV_NAME

    def __init__(self, config: RandomConvFeaturesConfig = RandomConvFeaturesConfig(), image_channels: int = 3) -> None:
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(config.seed)
        widths = (image_channels, *config.channels)
        self.weights = nn.ParameterList([
            nn.Parameter(torch.randn(o, i, 3, 3, generator=generator) / (i * 9) ** 0.5, requires_grad=False)
            for i, o in zip(widths, widths[1:])
        ])

    @property
    def dim(self) -> int:
        return 2 * self.config.channels[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, 2 * C_last]
        x = images
        for weight in self.weights:
            x = F.leaky_relu(F.conv2d(x, weight, stride=2, padding=1), self.config.lrelu_slope)
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, D] float32 on the CPU, batched."""
        device = self.weights[0].device
        size = self.config.batch_size
        return torch.cat([self(images[i:i + size].to(device).float()).cpu() for i in range(0, len(images), size)])


def load_feature_extractor(source: Bundle | Path | None, device: torch.device | str = "cpu",
                           kind: str = "auto") -> tuple[FeatureExtractor, str]:
    """A feature extractor and its name: `moco-embedder` (the bundle's C), `random-conv`, or
    `auto` (C when the bundle has one, else random-conv)."""
    if kind not in ("auto", MOCO_NAME, RANDOM_CONV_NAME):
        raise ValueError(f"unknown feature extractor {kind!r}; choose auto, {MOCO_NAME} or {RANDOM_CONV_NAME}")
    bundle = source if isinstance(source, Bundle) else (
        Bundle.open(source) if source is not None and is_bundle(source) else None)
    if kind == MOCO_NAME or (kind == "auto" and bundle is not None and bundle.has(EMBEDDER)):
        if bundle is None:
            raise BundleError(f"{MOCO_NAME} features need a model bundle with an embedder; {source} is none")
        return bundle.load_embedder(device), MOCO_NAME
    return RandomConvFeatures().to(device).eval(), RANDOM_CONV_NAME
