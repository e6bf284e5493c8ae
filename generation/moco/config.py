"""EmbedderConfig: every constant of the MoCo v2 embedder C, per preset.

Values follow MoCo v2 (Chen et al. 2020: MLP head, blur, cosine schedule) and the official CIFAR
demo for small single-process runs (ResNet-18, m = 0.99, T = 0.1, SplitBN with batch shuffle),
with three changes measured on the phantom archive (docs/benchmarks.md, embedder section): the
queue holds about an eighth of the training set (K = 1024 for 8,000 images; K = 4096, half the
set, filled it with near-duplicates and the loss drifted up to log(K + 1)), SplitBN uses groups of
32 rather than 8, and the augmentations add the camera's nuisances while leaving saturation alone
(pink against red is the inflammation cue). The learning rate is the CIFAR demo's 0.06 per 512
images scaled linearly to the batch. The small preset uses the ImageNet stem (7x7 stride 2 +
max-pool): the CIFAR stem at 64 px costs about 11x the compute, and dropping only the max-pool
(4x) learned more slowly per epoch. The paper preset keeps MoCo v2's ImageNet recipe with the
same queue share; it has not been trained here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from generation.moco.readout import Readout
from generation.presets import PRESET_RESOLUTION, check_preset

BACKBONE_FEATURE_DIM: dict[str, int] = {"resnet18": 512, "resnet50": 2048}
STEMS = ("imagenet", "cifar")

# MoCo v2's Gaussian blur at 224 px: sigma in [0.1, 2.0], kernel about 10% of the image side.
MOCO_REFERENCE_RESOLUTION = 224
MOCO_BLUR_SIGMA = (0.1, 2.0)
MOCO_BLUR_KERNEL_FRACTION = 0.1


@dataclass(frozen=True)
class EmbedderConfig:
    """Architecture, contrastive, augmentation, optimiser and probe settings of C."""

    preset: str
    resolution: int
    backbone: str  # torchvision constructor name, built with weights=None
    stem: str  # "imagenet" (7x7/2 conv + max-pool) or "cifar" (3x3/1 conv, no max-pool)
    projection_hidden_dim: int  # MLP head: feature -> hidden -> ReLU -> projection
    projection_dim: int
    queue_size: int  # K negatives; well below the archive size so keys are not stale duplicates
    momentum: float  # key encoder: theta_k <- m * theta_k + (1 - m) * theta_q
    temperature: float
    bn_splits: int  # SplitBatchNorm groups, emulating ShuffleBN in one process
    batch_size: int
    learning_rate: float
    sgd_momentum: float
    weight_decay: float
    epochs: int
    # MoCo v2 augmentations adapted to throat photos: colour carries the diagnosis, so the jitter
    # is mild (brightness/contrast 0.2, no saturation or hue change: pink against red is the
    # inflammation cue), there is no grayscale, and crops keep at least half the frame (tonsil
    # size is read against the width of the oropharynx). On phantoms, jitter 0.2/0.2/0.1/0 with
    # crops from 0.5 beat 0.4/0.4/0.2/0.02 with crops from 0.3 after one epoch, and dropping the
    # saturation jitter (with SplitBN groups of 32) helped again (docs/benchmarks.md, embedder section).
    crop_scale_min: float
    jitter_brightness: float
    jitter_contrast: float
    jitter_saturation: float
    jitter_hue: float
    jitter_probability: float
    blur_probability: float
    blur_sigma_min: float
    blur_sigma_max: float
    blur_kernel_size: int
    flip_probability: float
    # k-NN probe (weighted vote as in the MoCo CIFAR demo) on a held-out labelled split.
    knn_k: int
    knn_temperature: float
    probe_holdout_fraction: float
    probe_bank_size: int
    probe_query_size: int
    seed: int = 0
    # Acquisition nuisances, drawn as the camera draws them, so that C keys on the throat rather
    # than on how it was photographed: white balance (R/B gain per unit colour temperature,
    # t ~ U(-1, 1)), flash-cone vignetting (corner darkening up to this share), small rotations
    # and sensor noise. Zero switches a nuisance off (the first shipped C had none of them).
    white_balance_gain: float = 0.0
    vignetting_max: float = 0.0
    rotation_degrees: float = 0.0
    noise_sigma_max: float = 0.0
    # Retrieval read-out (generation/moco/readout.py): stage whose activations are pooled to a
    # grid of regions. Stage 4 with grid 1 is the plain pooled vector; training picks the read-out
    # by leave-one-out k-NN on the probe bank and records it in the bundle.
    readout_stage: int = 4
    readout_grid: int = 1

    def __post_init__(self) -> None:
        check_preset(self.preset)
        Readout(self.readout_stage, self.readout_grid)  # validates both
        if self.backbone not in BACKBONE_FEATURE_DIM:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONE_FEATURE_DIM)}")
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r}; choose one of {STEMS}")
        if self.resolution < 16:
            raise ValueError(f"resolution {self.resolution} is too small for a ResNet trunk (at least 16 px)")
        if self.batch_size % self.bn_splits:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by bn_splits {self.bn_splits}")
        if not 0.0 < self.momentum < 1.0:
            raise ValueError(f"momentum must lie in (0, 1), got {self.momentum}")
        if self.queue_size < self.batch_size:
            raise ValueError(f"queue_size {self.queue_size} must be at least the batch size {self.batch_size}")

    @property
    def feature_dim(self) -> int:
        """Width of the pooled backbone feature: the appearance vector C(x)."""
        return BACKBONE_FEATURE_DIM[self.backbone]

    @property
    def readout(self) -> Readout:
        return Readout(self.readout_stage, self.readout_grid)

    def with_readout(self, readout: Readout) -> "EmbedderConfig":
        return self.replace(readout_stage=readout.stage, readout_grid=readout.grid)

    @classmethod
    def for_preset(cls, name: str) -> "EmbedderConfig":
        resolution = PRESET_RESOLUTION[check_preset(name)]
        scale = resolution / MOCO_REFERENCE_RESOLUTION
        kernel = max(3, int(round(resolution * MOCO_BLUR_KERNEL_FRACTION)) | 1)
        common: dict[str, Any] = dict(
            preset=name,
            resolution=resolution,
            projection_dim=128,
            temperature=0.1,
            sgd_momentum=0.9,
            crop_scale_min=0.5,
            jitter_brightness=0.2,
            jitter_contrast=0.2,
            jitter_saturation=0.0,
            jitter_hue=0.0,
            jitter_probability=0.8,
            blur_probability=0.5,
            blur_sigma_min=MOCO_BLUR_SIGMA[0] * scale,
            blur_sigma_max=MOCO_BLUR_SIGMA[1] * scale,
            blur_kernel_size=kernel,
            flip_probability=0.5,
            knn_temperature=0.1,
            probe_holdout_fraction=0.2,
            # the phantom camera's own ranges (phantoms.render.AppearanceConfig, ParameterRanges)
            white_balance_gain=0.07,
            vignetting_max=0.4,
            rotation_degrees=7.0,
            noise_sigma_max=0.03,
        )
        if name == "tiny":
            return cls(
                **common, backbone="resnet18", stem="imagenet", projection_hidden_dim=512,
                queue_size=256, momentum=0.99, bn_splits=2, batch_size=16, learning_rate=0.03,
                weight_decay=5e-4, epochs=1, knn_k=10, probe_bank_size=64, probe_query_size=32,
            )
        if name == "small":
            return cls(
                **common, backbone="resnet18", stem="imagenet", projection_hidden_dim=512,
                queue_size=1024, momentum=0.99, bn_splits=2, batch_size=64, learning_rate=0.0075,
                weight_decay=5e-4, epochs=40, knn_k=50, probe_bank_size=2000, probe_query_size=1000,
            )
        return cls(
            **common, backbone="resnet50", stem="imagenet", projection_hidden_dim=2048,
            queue_size=4096, momentum=0.99, bn_splits=8, batch_size=256, learning_rate=0.03,
            weight_decay=1e-4, epochs=200, knn_k=200, probe_bank_size=20000, probe_query_size=5000,
        )


    def replace(self, **changes: Any) -> "EmbedderConfig":
        return dataclasses.replace(self, **changes)
