"""Frozen configs of the StyleGAN2 generator G, its discriminator and its training, per preset.

Every constant the networks and the loop use lives here, resolved once and written into each
checkpoint and bundle (reference notes, sections 1-3). The `small` preset is sized for a 2-core
CPU: a ~0.46M-parameter G (about 2 MB of safetensors, 64 channels up to 32 px, 32 at 64 px)
whose G+D step at batch 16 takes about a second on one core, so an hour sees tens of kimg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from generation.configs import Cadence
from generation.presets import PRESET_RESOLUTION, check_preset

# Base resolution of the learned constant and of the discriminator epilogue.
BASE_RESOLUTION = 4


def _check_resolution(resolution: int) -> None:
    if resolution < 2 * BASE_RESOLUTION or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= {2 * BASE_RESOLUTION}, got {resolution}")


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """StyleGAN2-ADA channel schedule: ch(res) = min(channel_base // res, channel_max)."""
    return min(channel_base // resolution, channel_max)


@dataclass(frozen=True)
class GeneratorConfig:
    """Mapping network and synthesis network shapes plus the architecture's fixed constants."""

    resolution: int
    z_dim: int
    w_dim: int
    mapping_layers: int
    channel_base: int
    channel_max: int
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.995
    pixel_norm_eps: float = 1e-8
    demodulate_eps: float = 1e-8
    style_bias_init: float = 1.0
    lrelu_slope: float = 0.2
    activation_gain: float = math.sqrt(2.0)
    blur_taps: tuple[int, ...] = (1, 3, 3, 1)
    image_channels: int = 3
    w_avg_samples: int = 10_000

    def __post_init__(self) -> None:
        _check_resolution(self.resolution)
        if min(self.z_dim, self.w_dim, self.mapping_layers, self.channel_base, self.channel_max) < 1:
            raise ValueError(f"GeneratorConfig sizes must be positive: {self}")

    @property
    def log2_resolution(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def num_ws(self) -> int:
        """Copies of w the synthesis network reads: 2 * log2(res) - 2."""
        return 2 * self.log2_resolution - 2

    def channels(self, resolution: int) -> int:
        return channels_at(resolution, self.channel_base, self.channel_max)

    @classmethod
    def for_preset(cls, name: str) -> "GeneratorConfig":
        resolution = PRESET_RESOLUTION[check_preset(name)]
        if name == "tiny":
            return cls(resolution=resolution, z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=32,
                       w_avg_samples=1000)
        if name == "small":
            return cls(resolution=resolution, z_dim=128, w_dim=128, mapping_layers=4, channel_base=2048,
                       channel_max=64)
        return cls(resolution=resolution, z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512,
                   w_avg_samples=100_000)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Residual discriminator with minibatch standard deviation (StyleGAN2 `resnet`)."""

    resolution: int
    channel_base: int
    channel_max: int
    mbstd_group_size: int = 4
    mbstd_channels: int = 1
    mbstd_eps: float = 1e-8
    lrelu_slope: float = 0.2
    activation_gain: float = math.sqrt(2.0)
    residual_gain: float = math.sqrt(0.5)
    blur_taps: tuple[int, ...] = (1, 3, 3, 1)
    image_channels: int = 3

    def __post_init__(self) -> None:
        _check_resolution(self.resolution)

    def channels(self, resolution: int) -> int:
        return channels_at(resolution, self.channel_base, self.channel_max)

    @classmethod
    def for_preset(cls, name: str) -> "DiscriminatorConfig":
        g = GeneratorConfig.for_preset(name)
        return cls(resolution=g.resolution, channel_base=g.channel_base, channel_max=g.channel_max)


@dataclass(frozen=True)
class GanTrainConfig:
    """StyleGAN2 training recipe: losses, lazy regularisation, Adam, EMA, augmentation, cadence.

    `augment` is "none", "fixed" (DiffAugment-style ops at probability `augment_p`) or "ada"
    (the same ops with p tuned so that E[sign(D(real))] tracks `ada_target`).
    """

    batch_size: int
    learning_rate: float
    r1_gamma: float
    pl_weight: float
    ema_half_life_kimg: float
    betas: tuple[float, float] = (0.0, 0.99)
    adam_eps: float = 1e-8
    r1_interval: int = 16
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing_prob: float = 0.9
    ema_rampup: float = 0.05
    mirror: bool = False
    augment: str = "ada"
    augment_p: float = 0.0
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0
    translate_ratio: float = 0.125
    cutout_ratio: float = 0.5
    brightness: float = 0.5
    saturation: float = 1.0
    contrast: float = 0.5
    cadence: Cadence = Cadence()
    sample_grid: int = 16
    fd_samples: int = 500
    steps: int = 5000  # a resumed run may raise it and train on
    preset: str = "small"  # the preset this recipe was resolved from (recorded in the bundle)

    def __post_init__(self) -> None:
        if self.augment not in ("none", "fixed", "ada"):
            raise ValueError(f"augment must be 'none', 'fixed' or 'ada', got {self.augment!r}")
        if self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("batch_size and learning_rate must be positive")
        if self.batch_size % self.pl_batch_shrink:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by pl_batch_shrink {self.pl_batch_shrink}")

    def adam_hyper(self, reg_interval: int | None) -> tuple[float, tuple[float, float]]:
        """Adam lr and betas; lazy regularisation every k steps scales lr by c = k/(k+1) and
        raises the betas to the power c. `None` means the network has no regulariser."""
        ratio = 1.0 if reg_interval is None else reg_interval / (reg_interval + 1)
        return self.learning_rate * ratio, (self.betas[0] ** ratio, self.betas[1] ** ratio)

    @classmethod
    def for_preset(cls, name: str) -> "GanTrainConfig":
        resolution = PRESET_RESOLUTION[check_preset(name)]
        batch = {"tiny": 8, "small": 16, "paper": 16}[name]
        # StyleGAN2-ADA `auto` heuristic gamma = 0.0002 * res^2 / batch (0.05 at 64 px) let D
        # separate phantoms completely within 100 steps (loss_D 0.03); the small preset uses the
        # `paper256` value instead, and a faster ADA speed because CPU runs last tens of kimg.
        auto_gamma = 0.0002 * resolution**2 / batch
        return cls(
            preset=name,
            steps={"tiny": 200, "small": 5000, "paper": 100_000}[name],
            batch_size=batch,
            learning_rate=0.0025,
            r1_gamma={"tiny": auto_gamma, "small": 1.0, "paper": auto_gamma}[name],
            ada_kimg={"tiny": 100.0, "small": 100.0, "paper": 500.0}[name],
            pl_weight=0.0 if name == "tiny" else 2.0,
            ema_half_life_kimg=batch * 10 / 32,
            cadence=Cadence(sample_every={"tiny": 50, "small": 250, "paper": 1000}[name],
                            checkpoint_every={"tiny": 50, "small": 250, "paper": 1000}[name]),
            fd_samples={"tiny": 64, "small": 500, "paper": 10_000}[name],
        )

