"""StyleGAN2 generator G (mapping + synthesis), its discriminator, training and bundle loader."""

from __future__ import annotations

from pathlib import Path

import torch

from generation.bundle import load_network
from generation.stylegan2.config import DiscriminatorConfig, GanTrainConfig, GeneratorConfig
from generation.stylegan2.networks import Discriminator, Generator, MappingNetwork, ModulatedConv2d, SynthesisNetwork

GENERATOR_NETWORK = "generator"

__all__ = [
    "Discriminator",
    "DiscriminatorConfig",
    "GanTrainConfig",
    "Generator",
    "GeneratorConfig",
    "MappingNetwork",
    "ModulatedConv2d",
    "SynthesisNetwork",
    "load_generator",
]


def load_generator(bundle_dir: Path, device: torch.device | str = "cpu") -> Generator:
    """The EMA generator stored in a model bundle, in eval mode on `device`."""
    return load_network(Path(bundle_dir), GENERATOR_NETWORK, lambda cfg: Generator(GeneratorConfig.from_dict(cfg)), device)
