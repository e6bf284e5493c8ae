"""C: the MoCo v2 appearance embedder (config, model, augmentations, probes, training loop)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from generation.moco.config import EmbedderConfig
from generation.moco.model import Embedder, MoCo
from generation.moco.readout import Readout

__all__ = ["Embedder", "EmbedderConfig", "MoCo", "Readout", "load_embedder", "save_readout"]


def load_embedder(bundle_dir: Path, device: torch.device | str = "cpu") -> Embedder:
    """C from a model bundle, frozen and in eval mode (it serves as a loss and as the index embedding)."""
    from generation.bundle import load_network

    embedder = load_network(bundle_dir, "embedder", lambda values: Embedder(EmbedderConfig.from_dict(values)), device)
    return embedder.requires_grad_(False).eval()


def save_readout(bundle_dir: Path, readout: Readout, record: dict[str, object]) -> None:
    """Make `readout` the retrieval read-out of the bundle's C (its config), with how it was chosen."""
    from generation.bundle import read_bundle_info, update_bundle_info

    networks = read_bundle_info(bundle_dir)["networks"]
    if "embedder" not in networks:
        raise FileNotFoundError(f"bundle {bundle_dir} has no 'embedder' network")
    entry = networks["embedder"]
    entry["config"] = dataclasses.asdict(EmbedderConfig.from_dict(entry["config"]).with_readout(readout))
    entry["readout"] = record
    update_bundle_info(bundle_dir, networks={"embedder": entry})
