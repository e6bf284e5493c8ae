"""The Sketch2MedI encoder E (after e4e) and its latent discriminator."""

from __future__ import annotations

from pathlib import Path

import torch

from generation.bundle import load_network, weights_digest
from generation.e4e.config import EncoderConfig, EncoderTrainConfig, LatentDiscriminatorConfig
from generation.e4e.model import Encoder, LatentDiscriminator

ENCODER_NETWORK = "encoder"
GENERATOR_NETWORK = "generator"

__all__ = ["Encoder", "EncoderConfig", "EncoderTrainConfig", "LatentDiscriminator", "LatentDiscriminatorConfig",
           "generator_digest", "load_encoder"]


def load_encoder(bundle_dir: Path, device: torch.device | str = "cpu") -> Encoder:
    """The trained E of a model bundle (with its G's mean w), in eval mode on `device`."""
    return load_network(Path(bundle_dir), ENCODER_NETWORK, lambda cfg: Encoder(EncoderConfig.from_dict(cfg)), device)


def generator_digest(bundle_dir: Path) -> str:
    """Digest of the bundle's generator weights: E and H record the G they were trained against."""
    return weights_digest(Path(bundle_dir), GENERATOR_NETWORK)
