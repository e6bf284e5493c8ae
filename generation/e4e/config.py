"""Configs of the encoder E, its latent discriminator and the E training loop (after e4e)."""

from __future__ import annotations

from dataclasses import dataclass

from generation.configs import TINY_PAIRED_RUN, Cadence, PresetTable
from generation.presets import PRESET_RESOLUTION, check_preset
from generation.resnet import BackboneConfig

SKETCH_CHANNELS = 1

# ResNet50 at the paper preset (e4e's non-face backbone choice in Sketch2MedI); shallower,
# narrower basic-block ResNets where a CPU trains E from scratch.
_ENCODER_BACKBONES: dict[str, dict] = {
    "tiny": dict(block="basic", stage_blocks=(1, 1, 1), stage_widths=(8, 16, 32), stem_kernel=3, stem_stride=1),
    "small": dict(block="basic", stage_blocks=(1, 1, 1, 1), stage_widths=(32, 64, 128, 256), stem_kernel=5, stem_stride=2),
    "paper": dict(block="bottleneck", stage_blocks=(3, 4, 6, 3), stage_widths=(64, 128, 256, 512), stem_kernel=7, stem_stride=2),
}
_HEAD_HIDDEN = {"tiny": 32, "small": 256, "paper": 512}


@dataclass(frozen=True)
class EncoderConfig:
    """E: grayscale sketch [1, R, R] -> one w (an offset from G's mean w, so E starts at w_avg)."""

    preset: str
    resolution: int
    w_dim: int
    backbone: BackboneConfig
    head_hidden: int
    leaky_slope: float = 0.2

    @classmethod
    def for_preset(cls, name: str, w_dim: int) -> "EncoderConfig":
        """`w_dim` comes from the generator's config: E writes into G's W space."""
        check_preset(name)
        backbone = BackboneConfig(in_channels=SKETCH_CHANNELS, **_ENCODER_BACKBONES[name])
        return cls(preset=name, resolution=PRESET_RESOLUTION[name], w_dim=w_dim, backbone=backbone,
                   head_hidden=_HEAD_HIDDEN[name])


@dataclass(frozen=True)
class LatentDiscriminatorConfig:
    """The 4-layer MLP on w of e4e (3 x [Linear, LeakyReLU] + Linear -> 1 logit)."""

    w_dim: int
    num_layers: int = 4
    leaky_slope: float = 0.2

    @classmethod
    def for_generator(cls, w_dim: int) -> "LatentDiscriminatorConfig":
        return cls(w_dim=w_dim)


@dataclass(frozen=True)
class EncoderTrainConfig(PresetTable):
    """Hyperparameters of `s2m train encoder` (paper eq. 3-5; e4e's lambda_adv, gamma, D lr).

    Adam stands in for e4e's Ranger; the small preset's E learning rate is raised because it trains
    for minutes on a CPU instead of 200k steps on a GPU.
    """

    preset: str
    batch_size: int
    steps: int
    lr_encoder: float
    lr_discriminator: float
    betas: tuple[float, float] = (0.9, 0.999)
    lambda_adv: float = 0.1
    r1_gamma: float = 10.0
    r1_interval: int = 16
    cadence: Cadence = Cadence(sample_every=100, checkpoint_every=100)
    sample_count: int = 8

    PRESETS = {
        "tiny": {**TINY_PAIRED_RUN, "steps": 20, "lr_encoder": 1e-3, "lr_discriminator": 2e-5},
        "small": {"batch_size": 8, "steps": 3000, "lr_encoder": 3e-4, "lr_discriminator": 2e-5},
        "paper": {"batch_size": 8, "steps": 200_000, "lr_encoder": 1e-4, "lr_discriminator": 2e-5,
                  "cadence": Cadence(log_every=100, sample_every=1000, checkpoint_every=5000)},
    }
