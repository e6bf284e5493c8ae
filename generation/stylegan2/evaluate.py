"""Fréchet distance between G's samples and held-out real images, in a named feature space."""

from __future__ import annotations

from pathlib import Path

import torch

from generation.data import ImageFolderDataset
from generation.metrics import FeatureExtractor, frechet_distance
from generation.stylegan2.networks import Generator


@torch.no_grad()
def sample_images(generator: Generator, count: int, seed: int, truncation: float = 1.0,
                  batch_size: int = 64) -> torch.Tensor:
    """`count` images [N, 3, R, R] from z drawn with their own seeded RNG, on the CPU."""
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(count, generator.config.z_dim, generator=rng)
    parts = [generator(z[i:i + batch_size].to(device), truncation=truncation).cpu() for i in range(0, count, batch_size)]
    return torch.cat(parts)


def load_real_images(dataset: Path, resolution: int, count: int) -> torch.Tensor:
    """The first `count` images of a dataset folder as [N, 3, R, R] in [-1, 1]."""
    images = ImageFolderDataset(dataset, resolution, limit=count)
    if len(images) < count:
        raise ValueError(f"{dataset} has {len(images)} images, fewer than the {count} asked for")
    return torch.stack([images[i] for i in range(len(images))])


def generator_frechet_distance(generator: Generator, reals: torch.Tensor, extractor: FeatureExtractor,
                               seed: int, truncation: float = 1.0) -> float:
    """Fréchet distance between as many G samples as `reals` [N, 3, R, R] and the reals themselves."""
    fakes = sample_images(generator, len(reals), seed, truncation)
    return frechet_distance(extractor.embed(fakes).numpy(), extractor.embed(reals).numpy())
