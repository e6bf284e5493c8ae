"""A ResNet feature extractor sized by a config, shared by the encoder E and the refiner H.

e4e and HyperStyle both use an ImageNet ResNet without the max-pool (7x7 stride-2 stem, four
stages); nothing is pretrained here, so the widths and depths shrink with the preset instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclass(frozen=True)
class BackboneConfig:
    """Depth and widths of a ResNet; ResNet34 = basic (3, 4, 6, 3), ResNet50 = bottleneck (3, 4, 6, 3)."""

    in_channels: int
    block: str
    stage_blocks: tuple[int, ...]
    stage_widths: tuple[int, ...]
    stem_kernel: int
    stem_stride: int

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"unknown ResNet block {self.block!r}; choose one of {sorted(BLOCKS)}")
        if len(self.stage_blocks) != len(self.stage_widths) or not self.stage_blocks:
            raise ValueError("stage_blocks and stage_widths must be non-empty and of equal length")

    @property
    def out_channels(self) -> int:
        return self.stage_widths[-1] * BLOCKS[self.block].expansion

    @property
    def downsampling(self) -> int:
        """Total stride: the stem, then stride 2 at every stage after the first."""
        return self.stem_stride * 2 ** (len(self.stage_widths) - 1)


class ResNetBackbone(nn.Module):
    """Stem conv + BN + PReLU (no max-pool), then residual stages; returns the last feature map."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        block = BLOCKS[config.block]
        stem_width = config.stage_widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(
                config.in_channels,
                stem_width,
                config.stem_kernel,
                stride=config.stem_stride,
                padding=config.stem_kernel // 2,
                bias=False,
            ),
            nn.BatchNorm2d(stem_width),
            nn.PReLU(stem_width),
        )
        stages = []
        in_channels = stem_width
        for index, (count, width) in enumerate(zip(config.stage_blocks, config.stage_widths)):
            stride = 1 if index == 0 else 2
            out_channels = width * block.expansion
            downsample = None
            if stride != 1 or in_channels != out_channels:
                downsample = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
                )
            layers = [block(in_channels, width, stride, downsample)]
            layers += [block(out_channels, width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # [B, in_channels, R, R] -> [B, out_channels, R / downsampling, R / downsampling]
        return self.stages(self.stem(images))
