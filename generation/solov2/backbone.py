"""ResNet backbone with a feature pyramid (FPN, Lin et al. 2017), trained from scratch."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from generation.solov2.config import SynthesizerConfig

PYRAMID_LEVELS = 4  # P2..P5, one per ResNet stage


def coord_channels(feature: torch.Tensor) -> torch.Tensor:
    """CoordConv channels (x, y in [-1, 1]) matching `feature` [B, C, H, W] -> [B, 2, H, W]."""
    batch, _, height, width = feature.shape
    ys = torch.linspace(-1.0, 1.0, height, device=feature.device, dtype=feature.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=feature.device, dtype=feature.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0).expand(batch, -1, -1, -1)


class ResNetFPN(nn.Module):
    """ResNet C2-C5 (torchvision, weights=None: trained from scratch) and an FPN producing P2-P5 with equal channels."""

    def __init__(self, config: SynthesizerConfig) -> None:
        super().__init__()
        from torchvision.models import resnet18, resnet34, resnet101
        from torchvision.models.resnet import BasicBlock, ResNet

        builders = {
            10: lambda weights: ResNet(BasicBlock, [1, 1, 1, 1]),
            18: resnet18,
            34: resnet34,
            101: resnet101,
        }
        resnet = builders[config.backbone_depth](weights=None)
        self.stem = nn.Sequential(
            resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool if config.stem_stride == 4 else nn.Identity()
        )
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        expansion = type(resnet.layer1[0]).expansion
        stage_channels = [width * expansion for width in (64, 128, 256, 512)]
        self.lateral = nn.ModuleList(nn.Conv2d(c, config.fpn_channels, 1) for c in stage_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(config.fpn_channels, config.fpn_channels, 3, padding=1) for _ in stage_channels
        )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [B, 3, R, R] -> [P2, P3, P4, P5], each [B, fpn_channels, R/s, R/s]."""
        x = self.stem(images)
        stages = []
        for stage in self.stages:
            x = stage(x)
            stages.append(x)
        laterals = [conv(c) for conv, c in zip(self.lateral, stages)]
        for level in range(len(laterals) - 2, -1, -1):
            top = F.interpolate(laterals[level + 1], size=laterals[level].shape[-2:], mode="nearest")
            laterals[level] = laterals[level] + top
        return [conv(p) for conv, p in zip(self.output, laterals)]
