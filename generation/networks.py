"""The networks a model bundle can hold: each name with its config class and builder.

The bundle knows its networks through this registry; no network module imports the bundle
(writing a network into a bundle is the job of the training code that trained it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from generation.configs import config_from_dict
from generation.e4e import Encoder, EncoderConfig
from generation.hyperstyle import HyperNetwork, HyperNetworkConfig
from generation.moco import Embedder, EmbedderConfig
from generation.pix2pix import Pix2PixConfig, UNetGenerator
from generation.solov2.config import SynthesizerConfig
from generation.solov2.model import SOLOv2
from generation.stylegan2 import Generator, GeneratorConfig

SYNTHESIZER = "synthesizer"
GENERATOR = "generator"
EMBEDDER = "embedder"
ENCODER = "encoder"
REFINER = "refiner"
PIX2PIX = "pix2pix"  # the baseline's generator, in a bundle of its own

ConfigOf = Callable[[str], dict[str, Any]]  # another network's config dict, by name (H is built for G's convs)


@dataclass(frozen=True)
class NetworkKind:
    """How one network is rebuilt: its config dataclass, and the module built from a config of it."""

    config_class: type
    build: Callable[[Any, ConfigOf], nn.Module]


def _refiner(config: HyperNetworkConfig, config_of: ConfigOf) -> HyperNetwork:
    """H is built for G's modulated convs; their shapes come from G's config alone (built on the meta device)."""
    with torch.device("meta"):
        shapes = Generator(config_from_dict(GeneratorConfig, config_of(GENERATOR))).synthesis.weight_shapes()
    return HyperNetwork(config, shapes)


REGISTRY: dict[str, NetworkKind] = {
    SYNTHESIZER: NetworkKind(SynthesizerConfig, lambda config, _: SOLOv2(config)),
    GENERATOR: NetworkKind(GeneratorConfig, lambda config, _: Generator(config)),
    EMBEDDER: NetworkKind(EmbedderConfig, lambda config, _: Embedder(config)),
    ENCODER: NetworkKind(EncoderConfig, lambda config, _: Encoder(config)),
    REFINER: NetworkKind(HyperNetworkConfig, _refiner),
    PIX2PIX: NetworkKind(Pix2PixConfig, lambda config, _: UNetGenerator(config)),
}
NETWORK_NAMES = tuple(REGISTRY)


def build_network(name: str, config: dict[str, Any], config_of: ConfigOf) -> nn.Module:
    """A fresh network `name` from its config dict as `bundle.json` stores it (weights not loaded)."""
    kind = REGISTRY[name]
    return kind.build(config_from_dict(kind.config_class, config), config_of)
