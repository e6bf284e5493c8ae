"""The Sketch2MedI refiner H (after HyperStyle): iterative per-channel weight offsets for G."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from generation.bundle import load_network
from generation.hyperstyle.config import HyperNetworkConfig, RefinerTrainConfig
from generation.hyperstyle.model import HyperNetwork, accumulate_offsets, refinement_step

REFINER_NETWORK = "refiner"

__all__ = ["HyperNetwork", "HyperNetworkConfig", "RefinerTrainConfig", "accumulate_offsets", "load_refiner",
           "refinement_step"]


def load_refiner(
    bundle_dir: Path, weight_shapes: Mapping[str, tuple[int, int, int, int]], device: torch.device | str = "cpu"
) -> HyperNetwork:
    """The trained H of a model bundle, rebuilt for the generator whose `weight_shapes()` is given."""
    return load_network(
        Path(bundle_dir), REFINER_NETWORK,
        lambda cfg: HyperNetwork(HyperNetworkConfig.from_dict(cfg), weight_shapes), device,
    )
