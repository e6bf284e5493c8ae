"""MoCo v2 augmentations for throat photos, and the two-view dataset the pretext task reads.

Random resized crop, mild colour jitter, Gaussian blur and horizontal flip. There is no
grayscale: redness, exudate and follicles are colour cues that the diagnosis depends on, so C
must not learn to ignore colour.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from generation.moco.config import EmbedderConfig


class MoCoAugment:
    """One random view of an image [3, R, R] in [-1, 1] -> [3, R, R] in [-1, 1]."""

    def __init__(self, config: EmbedderConfig) -> None:
        jitter = v2.ColorJitter(config.jitter_brightness, config.jitter_contrast, config.jitter_saturation, config.jitter_hue)
        blur = v2.GaussianBlur(config.blur_kernel_size, sigma=(config.blur_sigma_min, config.blur_sigma_max))
        self.transform = v2.Compose([
            v2.RandomResizedCrop(config.resolution, scale=(config.crop_scale_min, 1.0), antialias=True),
            v2.RandomApply([jitter], p=config.jitter_probability),
            v2.RandomApply([blur], p=config.blur_probability),
            v2.RandomHorizontalFlip(p=config.flip_probability),
        ])

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        unit = (image * 0.5 + 0.5).clamp(0.0, 1.0)  # ColorJitter works on [0, 1]
        return self.transform(unit).clamp(0.0, 1.0) * 2.0 - 1.0


class TwoViews(torch.utils.data.Dataset):
    """(query view, key view): two independent augmentations of the same image."""

    def __init__(self, images: torch.utils.data.Dataset, augment: MoCoAugment) -> None:
        self.images = images
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]  # [3, R, R]
        return self.augment(image), self.augment(image)
