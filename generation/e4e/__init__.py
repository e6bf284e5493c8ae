"""The Sketch2MedI encoder E (after e4e) and its latent discriminator."""

from __future__ import annotations

from generation.e4e.config import EncoderConfig, EncoderTrainConfig, LatentDiscriminatorConfig
from generation.e4e.model import Encoder, LatentDiscriminator

__all__ = ["Encoder", "EncoderConfig", "EncoderTrainConfig", "LatentDiscriminator", "LatentDiscriminatorConfig"]
