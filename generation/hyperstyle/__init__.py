"""The Sketch2MedI refiner H (after HyperStyle): iterative per-channel weight offsets for G."""

from __future__ import annotations

from generation.hyperstyle.config import HyperNetworkConfig, RefinerTrainConfig
from generation.hyperstyle.model import HyperNetwork, accumulate_offsets, refinement_step

__all__ = ["HyperNetwork", "HyperNetworkConfig", "RefinerTrainConfig", "accumulate_offsets", "refinement_step"]
