"""Configs of the pix2pix baseline and of its training loop (its own tiny/small/paper presets)."""

from __future__ import annotations

from dataclasses import dataclass

from generation.configs import TINY_PAIRED_RUN, Cadence, PresetTable
from generation.presets import PRESET_RESOLUTION, check_preset

# (base width, widest layer, discriminator layers) per preset; the U-Net goes down to 1 x 1
# as in the paper's 256 px "U-Net 256" (8 downsamplings), here log2(resolution) of them.
_WIDTHS = {"tiny": (8, 32, 2), "small": (32, 256, 3), "paper": (64, 512, 3)}


@dataclass(frozen=True)
class Pix2PixConfig:
    """U-Net generator (sketch -> photo) and 70x70-style PatchGAN discriminator widths."""

    preset: str
    resolution: int
    base_channels: int  # first encoder layer; doubled per level up to max_channels
    max_channels: int
    discriminator_layers: int  # stride-2 conv layers of the PatchGAN before its two stride-1 layers
    sketch_channels: int = 1
    image_channels: int = 3
    dropout: float = 0.5  # on the innermost decoder layers (pix2pix's only noise source)
    dropout_layers: int = 3
    leaky_slope: float = 0.2

    @property
    def depth(self) -> int:
        """Number of stride-2 levels: down to a 1 x 1 bottleneck."""
        return self.resolution.bit_length() - 1

    @classmethod
    def for_preset(cls, name: str) -> "Pix2PixConfig":
        check_preset(name)
        base, widest, layers = _WIDTHS[name]
        return cls(preset=name, resolution=PRESET_RESOLUTION[name], base_channels=base, max_channels=widest,
                   discriminator_layers=layers)


@dataclass(frozen=True)
class Pix2PixTrainConfig(PresetTable):
    """Hyperparameters of `s2m train pix2pix`: Adam 2e-4, betas (0.5, 0.999), lambda_L1 = 100 (the paper's)."""

    preset: str
    batch_size: int
    steps: int
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_l1: float = 100.0
    cadence: Cadence = Cadence(checkpoint_every=100)
    sample_count: int = 8

    PRESETS = {
        "tiny": {**TINY_PAIRED_RUN, "steps": 30, "lr": 1e-3},
        "small": {"batch_size": 16, "steps": 3000},
        "paper": {"batch_size": 1, "steps": 200_000,
                  "cadence": Cadence(log_every=100, sample_every=2000, checkpoint_every=2000)},
    }
