"""Configs of the refiner H (HyperStyle's hypernetwork) and of the H training loop."""

from __future__ import annotations

from dataclasses import dataclass

from generation.configs import TINY_PAIRED_RUN, Cadence, PresetTable
from generation.presets import PRESET_RESOLUTION, check_preset
from generation.resnet import BackboneConfig

# H sees the sketch (1 channel) beside the current RGB output (3 channels).
REFINER_IN_CHANNELS = 4

# ResNet34 at the paper preset, as HyperStyle; small basic-block ResNets on CPU presets.
_REFINER_BACKBONES: dict[str, dict] = {
    "tiny": dict(block="basic", stage_blocks=(1, 1, 1), stage_widths=(8, 16, 32), stem_kernel=3, stem_stride=1),
    "small": dict(block="basic", stage_blocks=(1, 1, 1, 1), stage_widths=(32, 64, 128, 256), stem_kernel=5, stem_stride=2),
    "paper": dict(block="basic", stage_blocks=(3, 4, 6, 3), stage_widths=(64, 128, 256, 512), stem_kernel=7, stem_stride=2),
}
# Per-layer tower width (HyperStyle uses 128), hidden width of the offset predictor, and the rank
# of the per-channel offset matrix Delta[C_out, C_in] = U V^T.
_HEADS = {
    "tiny": dict(head_channels=16, head_hidden=32, offset_rank=4),
    "small": dict(head_channels=64, head_hidden=128, offset_rank=8),
    "paper": dict(head_channels=128, head_hidden=512, offset_rank=16),
}


@dataclass(frozen=True)
class HyperNetworkConfig:
    """H: (sketch, current image) -> per-channel weight offsets for G's tuned layers.

    The layer list and every offset shape come from `G.synthesis.weight_shapes()` when H is built,
    never from this config; `tune_torgb` only chooses whether toRGB layers are refined.
    """

    preset: str
    resolution: int
    backbone: BackboneConfig
    head_channels: int
    head_hidden: int
    offset_rank: int
    tune_torgb: bool = False
    leaky_slope: float = 0.2

    @classmethod
    def for_preset(cls, name: str) -> "HyperNetworkConfig":
        check_preset(name)
        backbone = BackboneConfig(in_channels=REFINER_IN_CHANNELS, **_REFINER_BACKBONES[name])
        return cls(preset=name, resolution=PRESET_RESOLUTION[name], backbone=backbone, **_HEADS[name])


@dataclass(frozen=True)
class RefinerTrainConfig(PresetTable):
    """Hyperparameters of `s2m train refiner` (HyperStyle: L_sim at every one of T steps).

    Adam stands in for HyperStyle's Ranger; the small preset's rate is raised for a short CPU run.
    """

    preset: str
    batch_size: int
    steps: int
    lr: float
    refinement_steps: int = 3
    betas: tuple[float, float] = (0.9, 0.999)
    cadence: Cadence = Cadence(sample_every=100, checkpoint_every=100)
    sample_count: int = 8

    PRESETS = {
        "tiny": {**TINY_PAIRED_RUN, "steps": 20, "lr": 1e-3},
        "small": {"batch_size": 8, "steps": 2000, "lr": 3e-4},
        "paper": {"batch_size": 8, "steps": 200_000, "lr": 1e-4,
                  "cadence": Cadence(log_every=100, sample_every=1000, checkpoint_every=5000)},
    }
