"""pix2pix's networks (Isola et al. 2017, section 3.2 and appendix 6.1.1).

`UNetGenerator`: an encoder-decoder with skip connections between mirrored levels
(C64-C128-...-C512 down to 1 x 1, then CD512...-C64 up), so low-level structure such as the
sketch's outlines can pass straight to the output. `PatchDiscriminator`: a PatchGAN that
classifies each overlapping patch of (sketch, photo) as real or generated.
"""

from __future__ import annotations

import torch
from torch import nn

from generation.pix2pix.config import Pix2PixConfig


def _widths(config: Pix2PixConfig) -> list[int]:
    """Channels of each encoder level, doubling from base_channels up to max_channels."""
    return [min(config.base_channels * 2 ** level, config.max_channels) for level in range(config.depth)]


class UNetGenerator(nn.Module):
    """Sketch [B, 1, R, R] in [-1, 1] -> photo [B, 3, R, R] in [-1, 1]."""

    def __init__(self, config: Pix2PixConfig) -> None:
        super().__init__()
        self.config = config
        widths = _widths(config)
        slope = config.leaky_slope
        self.down = nn.ModuleList()
        previous = config.sketch_channels
        for level, width in enumerate(widths):
            innermost, outermost = level == len(widths) - 1, level == 0
            layers: list[nn.Module] = [] if outermost else [nn.LeakyReLU(slope)]
            layers.append(nn.Conv2d(previous, width, 4, stride=2, padding=1, bias=outermost or innermost))
            if not (outermost or innermost):  # no norm on the first layer nor on the 1 x 1 bottleneck
                layers.append(nn.BatchNorm2d(width))
            self.down.append(nn.Sequential(*layers))
            previous = width
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            innermost, outermost = level == len(widths) - 1, level == 0
            in_channels = widths[level] * (1 if innermost else 2)  # skip concatenated below the bottleneck
            out_channels = config.image_channels if outermost else widths[level - 1]
            layers = [nn.ReLU(), nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=outermost)]
            if outermost:
                layers.append(nn.Tanh())
            else:
                layers.append(nn.BatchNorm2d(out_channels))
                if len(widths) - 1 - level < config.dropout_layers:
                    layers.append(nn.Dropout(config.dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        skips = []
        x = sketch  # [B, 1, R, R]
        for layer in self.down:
            x = layer(x)
            skips.append(x)  # level l: [B, widths[l], R / 2^(l+1), ...]
        for index, layer in enumerate(self.up):
            if index > 0:
                x = torch.cat([x, skips[-1 - index]], dim=1)
            x = layer(x)
        return x  # [B, 3, R, R]


class PatchDiscriminator(nn.Module):
    """(sketch [B, 1, R, R], photo [B, 3, R, R]) -> real/fake logits per patch [B, 1, P, P]."""

    def __init__(self, config: Pix2PixConfig) -> None:
        super().__init__()
        self.config = config
        slope = config.leaky_slope
        width = config.base_channels
        layers: list[nn.Module] = [nn.Conv2d(config.sketch_channels + config.image_channels, width, 4, 2, 1),
                                   nn.LeakyReLU(slope)]
        for level in range(1, config.discriminator_layers + 1):
            stride = 2 if level < config.discriminator_layers else 1
            wider = min(width * 2, config.max_channels)
            layers += [nn.Conv2d(width, wider, 4, stride, 1, bias=False), nn.BatchNorm2d(wider), nn.LeakyReLU(slope)]
            width = wider
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, sketch: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([sketch, photo], dim=1))
