"""Differentiable augmentation for small archives (DiffAugment ops under an ADA-style probability).

Applied to reals and fakes alike before D. Every op is indexing or arithmetic, so double
backward works and R1 can be taken through it with respect to the un-augmented reals (the
grid_sample route of ADA's geometric pipeline has no double backward in released PyTorch).
Each op is applied to each sample independently with probability p; random draws use the
global torch RNG so that a resumed run repeats them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from generation.stylegan2.config import GanTrainConfig


def _per_sample(images: torch.Tensor, augmented: torch.Tensor, p: float) -> torch.Tensor:
    apply = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < p
    return torch.where(apply, augmented, images)


def translate(images: torch.Tensor, ratio: float) -> torch.Tensor:
    """Integer shift by up to `ratio` of the size in x and y, zero fill. [B, C, H, W] -> same."""
    batch, _, height, width = images.shape
    max_y, max_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, (batch, 1), device=images.device)
    shift_x = torch.randint(-max_x, max_x + 1, (batch, 1), device=images.device)
    rows = (torch.arange(height, device=images.device)[None] - shift_y + 1).clamp(0, height + 1)  # [B, H]
    cols = (torch.arange(width, device=images.device)[None] - shift_x + 1).clamp(0, width + 1)  # [B, W]
    padded = F.pad(images, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # [B, H+2, W+2, C], border = fill
    index = torch.arange(batch, device=images.device)[:, None, None]
    return padded[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def brightness(images: torch.Tensor, strength: float) -> torch.Tensor:
    offset = (torch.rand(images.shape[0], 1, 1, 1, device=images.device) - 0.5) * 2 * strength
    return images + offset


def saturation(images: torch.Tensor, strength: float) -> torch.Tensor:
    mean = images.mean(dim=1, keepdim=True)
    scale = 1 + (torch.rand(images.shape[0], 1, 1, 1, device=images.device) - 0.5) * 2 * strength
    return (images - mean) * scale + mean


def contrast(images: torch.Tensor, strength: float) -> torch.Tensor:
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    scale = 1 + (torch.rand(images.shape[0], 1, 1, 1, device=images.device) - 0.5) * 2 * strength
    return (images - mean) * scale + mean


def cutout(images: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero a square of side `ratio` * size at a random centre of each sample."""
    batch, _, height, width = images.shape
    half_h, half_w = height * ratio / 2, width * ratio / 2
    centre_y = torch.rand(batch, 1, 1, device=images.device) * height
    centre_x = torch.rand(batch, 1, 1, device=images.device) * width
    ys = torch.arange(height, device=images.device)[None, :, None] + 0.5
    xs = torch.arange(width, device=images.device)[None, None, :] + 0.5
    inside = ((ys - centre_y).abs() < half_h) & ((xs - centre_x).abs() < half_w)  # [B, H, W]
    return images * (~inside).unsqueeze(1).to(images.dtype)


@dataclass
class AugmentPipe:
    """The op pipeline and its probability p, adapted ADA-style when `adaptive`."""

    config: GanTrainConfig
    p: float

    @classmethod
    def from_config(cls, config: GanTrainConfig) -> "AugmentPipe":
        return cls(config=config, p=config.augment_p if config.augment != "none" else 0.0)

    @property
    def adaptive(self) -> bool:
        return self.config.augment == "ada"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> same
        if self.config.augment == "none" or self.p <= 0:
            return images
        c = self.config
        images = _per_sample(images, translate(images, c.translate_ratio), self.p)
        images = _per_sample(images, brightness(images, c.brightness), self.p)
        images = _per_sample(images, saturation(images, c.saturation), self.p)
        images = _per_sample(images, contrast(images, c.contrast), self.p)
        return _per_sample(images, cutout(images, c.cutout_ratio), self.p)

    def adjust(self, real_sign_mean: float, images_since_last: int) -> None:
        """ADA heuristic: raise p when D is overconfident on reals (E[sign D(real)] > target)."""
        if not self.adaptive:
            return
        step = images_since_last / (self.config.ada_kimg * 1000)
        direction = 1.0 if real_sign_mean > self.config.ada_target else -1.0
        self.p = min(max(self.p + direction * step, 0.0), 1.0)
