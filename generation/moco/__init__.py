"""C: the MoCo v2 appearance embedder (config, model, augmentations, probes, training loop)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from generation.moco.config import EmbedderConfig
from generation.moco.model import Embedder, MoCo
from generation.moco.readout import Readout

__all__ = ["Embedder", "EmbedderConfig", "MoCo", "Readout", "save_readout"]


def save_readout(bundle_dir: Path, readout: Readout, record: dict[str, object]) -> None:
    """Make `readout` the retrieval read-out of the bundle's C (its config), with how it was chosen."""
    from generation.bundle import EMBEDDER, Bundle, update_bundle_info
    from generation.configs import config_from_dict

    entry = Bundle.open(bundle_dir).entry(EMBEDDER)
    entry["config"] = dataclasses.asdict(config_from_dict(EmbedderConfig, entry["config"]).with_readout(readout))
    entry["readout"] = record
    update_bundle_info(bundle_dir, networks={EMBEDDER: entry})
