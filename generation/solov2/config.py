"""SOLOv2 configuration per preset: architecture, target assignment, losses and inference.

Reductions from the official R101 config (reference note, SOLOv2 section 1.6), chosen for
32-256 px inputs with about five instances of four classes:
- three head levels on P3/P4/P5 instead of five on P2-P6; scale ranges are fractions of the
  input side (sqrt of the box area / input side), so one set serves every resolution;
  neighbouring ranges overlap by a factor of two as in the official config;
- at 32 and 64 px the stem drops its max-pool (stem stride 2), so the unified mask feature sits
  at 1/2 of the input (32x32 at 64 px) instead of 1/4: a 16x16 mask cannot outline a uvula;
- a trained-from-scratch ResNet18 at the small presets (no pretrained weights exist here),
  lighter towers (fewer, narrower convs, smaller kernel dimension E);
- unchanged: centre-region sigma 0.2 clipped to 3x3 cells, focal loss 0.25/2.0, Dice weight 3,
  points NMS, maskness rescoring, Matrix NMS with the gaussian kernel (sigma 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from generation.configs import Cadence
from generation.presets import PRESET_RESOLUTION, check_preset


@dataclass(frozen=True)
class SynthesizerConfig:
    """Everything that defines a SOLOv2 network S and how its outputs become instances."""

    preset: str
    resolution: int  # input side in pixels; images are resized to it
    category_ids: tuple[int, ...] = (1, 2, 3, 4)  # COCO ids: uvula, pharyngeal wall, tonsil, tongue
    backbone_depth: int = 18  # ResNet depth: 18, 34 or 101 (10 = one block per stage, for tests)
    stem_stride: int = 2  # 2 drops the stem max-pool (small inputs), 4 is the standard stem
    fpn_channels: int = 128
    head_levels: tuple[int, ...] = (1, 2, 3)  # indices into the FPN outputs P2..P5
    grid_sizes: tuple[int, ...] = (16, 12, 8)  # S per head level
    scale_ranges: tuple[tuple[float, float], ...] = ((0.0, 0.25), (0.125, 0.5), (0.25, 2.0))
    head_convs: int = 2  # stacked 3x3 conv + GN + ReLU in the category and kernel towers
    head_channels: int = 128
    kernel_dim: int = 64  # E: channels of the unified mask feature = size of a dynamic 1x1 kernel
    mask_channels: int = 64  # channels inside the mask-feature branch
    norm_groups: int = 16  # GroupNorm groups in the head and mask branch
    prior_probability: float = 0.01  # initial foreground probability of the category classifier
    centre_sigma: float = 0.2  # centre region = sigma * box, around the mask's centre of mass
    centre_max_cells: int = 1  # the region is clipped to this many cells around the centre cell
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    dice_weight: float = 3.0
    dice_epsilon: float = 0.001
    cell_score_threshold: float = 0.1  # category score a cell needs to produce a mask
    mask_threshold: float = 0.5
    nms_pre: int = 100  # masks kept before Matrix NMS
    nms_sigma: float = 2.0  # gaussian Matrix NMS decay
    nms_kernel: str = "gaussian"
    update_threshold: float = 0.05  # decayed score a mask needs to survive Matrix NMS
    max_instances: int = 20
    score_threshold: float = 0.35  # the paper's delta: final score an instance needs

    def __post_init__(self) -> None:
        check_preset(self.preset)
        if self.backbone_depth not in (10, 18, 34, 101):
            raise ValueError(f"backbone_depth must be 10, 18, 34 or 101, got {self.backbone_depth}")
        if self.stem_stride not in (2, 4):
            raise ValueError(f"stem_stride must be 2 or 4, got {self.stem_stride}")
        coarsest = self.stem_stride * 8
        if self.resolution % coarsest:
            raise ValueError(f"resolution {self.resolution} must be a multiple of {coarsest} (stride of P5)")
        if not (len(self.head_levels) == len(self.grid_sizes) == len(self.scale_ranges)):
            raise ValueError("head_levels, grid_sizes and scale_ranges must have one entry per head level")
        if self.nms_kernel not in ("gaussian", "linear"):
            raise ValueError(f"nms_kernel must be 'gaussian' or 'linear', got {self.nms_kernel!r}")

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @property
    def mask_stride(self) -> int:
        """Input pixels per pixel of the unified mask feature (that of P2)."""
        return self.stem_stride

    def level_stride(self, level: int) -> int:
        """Input pixels per pixel of FPN output `level` (0 = P2)."""
        return self.stem_stride * 2**level

    @classmethod
    def for_preset(cls, name: str) -> "SynthesizerConfig":
        check_preset(name)
        resolution = PRESET_RESOLUTION[name]
        if name == "tiny":
            return cls(
                preset=name, resolution=resolution, backbone_depth=10, fpn_channels=32, grid_sizes=(8, 6, 4), head_convs=1,
                head_channels=32, kernel_dim=16, mask_channels=16, norm_groups=8,
            )
        if name == "small":
            return cls(preset=name, resolution=resolution)
        return cls(
            preset=name, resolution=resolution, backbone_depth=101, stem_stride=4, fpn_channels=256,
            grid_sizes=(24, 16, 8), head_convs=4, head_channels=512, kernel_dim=256, mask_channels=128,
            norm_groups=32,
        )


@dataclass(frozen=True)
class SynthesizerTrainingConfig:
    """Optimisation and augmentation of one S training run."""

    batch_size: int = 16
    learning_rate: float = 1e-3  # AdamW: converges from scratch in far fewer epochs than SGD 0.01
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    epochs: int = 30
    grad_clip_norm: float = 35.0
    flip_probability: float = 0.5
    scale_range: tuple[float, float] = (0.8, 1.25)
    colour_jitter: float = 0.2  # max relative change of brightness, contrast and saturation
    val_fraction: float = 0.2  # the paper: 1,600 train / 400 val of 2,000
    split_seed: int = 0
    overlay_count: int = 8  # validation images drawn in the overlay PNG each epoch
    cadence: Cadence = Cadence()  # S samples (validation overlays) and checkpoints at each epoch's end

    @classmethod
    def for_preset(cls, name: str) -> "SynthesizerTrainingConfig":
        check_preset(name)
        if name == "tiny":
            return cls(batch_size=4, learning_rate=2e-3, warmup_steps=5, epochs=2, overlay_count=2,
                       cadence=Cadence(log_every=1))
        if name == "small":
            return cls()
        return cls(batch_size=16, learning_rate=2e-4, warmup_steps=1000, epochs=36)
