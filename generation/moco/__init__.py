"""C: the MoCo v2 appearance embedder (config, model, augmentations, probes, training loop)."""

from __future__ import annotations

from generation.moco.config import EmbedderConfig
from generation.moco.model import Embedder, MoCo
from generation.moco.readout import Readout

__all__ = ["Embedder", "EmbedderConfig", "MoCo", "Readout"]
