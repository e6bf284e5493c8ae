"""StyleGAN2 generator G (mapping + synthesis), its discriminator, and training."""

from __future__ import annotations

from generation.stylegan2.config import DiscriminatorConfig, GanTrainConfig, GeneratorConfig
from generation.stylegan2.networks import Discriminator, Generator, MappingNetwork, ModulatedConv2d, SynthesisNetwork

__all__ = [
    "Discriminator",
    "DiscriminatorConfig",
    "GanTrainConfig",
    "Generator",
    "GeneratorConfig",
    "MappingNetwork",
    "ModulatedConv2d",
    "SynthesisNetwork",
]

