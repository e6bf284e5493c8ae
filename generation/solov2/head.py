"""SOLOv2 heads: the per-grid category and dynamic-kernel branches, and the unified mask feature."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from generation.solov2.backbone import PYRAMID_LEVELS, coord_channels
from generation.solov2.config import SynthesizerConfig


def conv_norm_relu(in_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """3x3 conv + GroupNorm + ReLU: mmcv's ConvModule as SOLOv2 uses it."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.ReLU(inplace=True),
    )


class SOLOv2Head(nn.Module):
    """For each head level, an S x S grid of class scores and of dynamic 1x1 mask kernels.

    Towers are shared across levels; the kernel branch sees two CoordConv channels so that a
    kernel knows where its cell is, the category branch does not (SOLOv2, Sec. 3.2).
    """

    def __init__(self, config: SynthesizerConfig) -> None:
        super().__init__()
        self.grid_sizes = config.grid_sizes
        width, groups = config.head_channels, config.norm_groups
        self.kernel_tower = nn.Sequential(
            *[conv_norm_relu(config.fpn_channels + 2 if i == 0 else width, width, groups) for i in range(config.head_convs)]
        )
        self.category_tower = nn.Sequential(
            *[conv_norm_relu(config.fpn_channels if i == 0 else width, width, groups) for i in range(config.head_convs)]
        )
        self.kernel_out = nn.Conv2d(width, config.kernel_dim, 3, padding=1)
        self.category_out = nn.Conv2d(width, config.num_classes, 3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
        nn.init.zeros_(self.kernel_out.bias)
        nn.init.constant_(self.category_out.bias, -math.log((1 - config.prior_probability) / config.prior_probability))

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Head-level features [B, C, h, w] -> categories [B, classes, S, S], kernels [B, E, S, S]."""
        categories, kernels = [], []
        for feature, grid in zip(features, self.grid_sizes):
            with_coords = torch.cat([feature, coord_channels(feature)], dim=1)
            with_coords = F.interpolate(with_coords, size=(grid, grid), mode="bilinear", align_corners=False)
            kernels.append(self.kernel_out(self.kernel_tower(with_coords)))
            categories.append(self.category_out(self.category_tower(with_coords[:, :-2])))
        return categories, kernels


class MaskFeatureBranch(nn.Module):
    """Unified mask feature F: P2-P5 each brought to P2's size by conv + 2x upsampling, summed.

    P5 gets CoordConv channels; a 1x1 conv + GN + ReLU maps the sum to E channels, the width of
    the dynamic kernels that convolve it.
    """

    def __init__(self, config: SynthesizerConfig) -> None:
        super().__init__()
        width, groups = config.mask_channels, config.norm_groups
        coarsest = PYRAMID_LEVELS - 1
        self.levels = nn.ModuleList()
        for level in range(PYRAMID_LEVELS):
            in_channels = config.fpn_channels + (2 if level == coarsest else 0)
            if level == 0:
                self.levels.append(conv_norm_relu(in_channels, width, groups))
                continue
            layers: list[nn.Module] = []
            for step in range(level):
                layers += [conv_norm_relu(in_channels if step == 0 else width, width, groups),
                           nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
            self.levels.append(nn.Sequential(*layers))
        self.out = nn.Sequential(
            nn.Conv2d(width, config.kernel_dim, 1, bias=False),
            nn.GroupNorm(groups, config.kernel_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        """[P2, P3, P4, P5] -> F [B, E, R/mask_stride, R/mask_stride]."""
        total = self.levels[0](pyramid[0])
        last = len(pyramid) - 1
        for level in range(1, len(pyramid)):
            feature = pyramid[level]
            if level == last:
                feature = torch.cat([feature, coord_channels(feature)], dim=1)
            total = total + self.levels[level](feature)
        return self.out(total)
