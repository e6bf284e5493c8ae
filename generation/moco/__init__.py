"""C: the MoCo v2 appearance embedder (config, model, augmentations, probes, training loop)."""

from __future__ import annotations

from pathlib import Path

import torch

from generation.moco.config import EmbedderConfig
from generation.moco.model import Embedder, MoCo

__all__ = ["Embedder", "EmbedderConfig", "MoCo", "load_embedder"]


def load_embedder(bundle_dir: Path, device: torch.device | str = "cpu") -> Embedder:
    """C from a model bundle, frozen and in eval mode (it serves as a loss and as the index embedding)."""
    from generation.bundle import load_network

    embedder = load_network(bundle_dir, "embedder", lambda values: Embedder(EmbedderConfig.from_dict(values)), device)
    return embedder.requires_grad_(False).eval()
