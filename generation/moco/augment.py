"""MoCo v2 augmentations for throat photos, and the two-view dataset the pretext task reads.

Random resized crop, small rotation, mild colour jitter, white balance, vignetting, Gaussian
blur, sensor noise and horizontal flip. There is no grayscale and no hue shift: redness, exudate
and follicles are colour cues that the diagnosis depends on, so C must not learn to ignore
colour. The acquisition nuisances (white balance, vignetting, rotation, noise) follow how a
throat camera varies between two photographs of the same patient, so two views differ the way
two acquisitions would and the embedding stops telling cases apart by their camera settings.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from generation.moco.config import EmbedderConfig


class WhiteBalance(torch.nn.Module):
    """Scale red by 1 + g*t and blue by 1 - g*t, t ~ U(-1, 1): a warmer or colder camera."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # [3, R, R] in [0, 1]
        t = float(torch.empty(()).uniform_(-1.0, 1.0))
        scale = torch.tensor([1.0 + self.gain * t, 1.0, 1.0 - self.gain * t]).view(3, 1, 1)
        return image * scale


class Vignetting(torch.nn.Module):
    """Darken towards the corners by up to `strength` (quadratic fall-off, as a flash cone)."""

    def __init__(self, strength: float, size: int) -> None:
        super().__init__()
        self.strength = strength
        axis = torch.linspace(-1.0, 1.0, size)
        self.radius2 = (axis.view(-1, 1) ** 2 + axis.view(1, -1) ** 2) / 2.0  # [R, R]: 0 centre .. 1 corner

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # [3, R, R]
        amount = float(torch.empty(()).uniform_(0.0, self.strength))
        return image * (1.0 - amount * self.radius2)


class SensorNoise(torch.nn.Module):
    """Additive Gaussian noise with sigma ~ U(0, sigma_max)."""

    def __init__(self, sigma_max: float) -> None:
        super().__init__()
        self.sigma_max = sigma_max

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        sigma = float(torch.empty(()).uniform_(0.0, self.sigma_max))
        return image + sigma * torch.randn_like(image)


class MoCoAugment:
    """One random view of an image [3, R, R] in [-1, 1] -> [3, R, R] in [-1, 1]."""

    def __init__(self, config: EmbedderConfig) -> None:
        jitter = v2.ColorJitter(config.jitter_brightness, config.jitter_contrast, config.jitter_saturation, config.jitter_hue)
        blur = v2.GaussianBlur(config.blur_kernel_size, sigma=(config.blur_sigma_min, config.blur_sigma_max))
        steps: list[torch.nn.Module] = [
            v2.RandomResizedCrop(config.resolution, scale=(config.crop_scale_min, 1.0), antialias=True),
        ]
        if config.rotation_degrees > 0:
            steps.append(v2.RandomRotation(config.rotation_degrees))
        steps.append(v2.RandomApply([jitter], p=config.jitter_probability))
        if config.white_balance_gain > 0:
            steps.append(WhiteBalance(config.white_balance_gain))
        if config.vignetting_max > 0:
            steps.append(Vignetting(config.vignetting_max, config.resolution))
        steps.append(v2.RandomApply([blur], p=config.blur_probability))
        if config.noise_sigma_max > 0:
            steps.append(SensorNoise(config.noise_sigma_max))
        steps.append(v2.RandomHorizontalFlip(p=config.flip_probability))
        self.transform = v2.Compose(steps)

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
