"""The refiner H: HyperStyle's hypernetwork (Alaluf et al. 2022) with per-channel offsets.

HyperStyle predicts full [C_out, C_in, k, k] offsets (hundreds of millions of parameters at
256 px). Here each refinement block predicts a rank-r matrix Delta[C_out, C_in] = U V^T that is
broadcast over the kernel, which keeps memory small and still changes every (out, in) pair that
demodulation does not cancel. The U factor is zero-initialised, so step 1 starts exactly at G(w).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from generation.resnet import ResNetBackbone
from generation.hyperstyle.config import HyperNetworkConfig

Offsets = dict[str, torch.Tensor]  # layer name -> Delta [B, C_out, C_in, 1, 1]
TORGB_PREFIX = "torgb"


def _module_key(layer_name: str) -> str:
    """ModuleDict keys may not contain dots; generator layer names may."""
    return layer_name.replace(".", "__")


class RefinementBlock(nn.Module):
    """One generator layer's head: a conv tower on H's features -> Delta [B, C_out, C_in, 1, 1]."""

    def __init__(self, config: HyperNetworkConfig, in_channels: int, out_size: int, in_size: int) -> None:
        super().__init__()
        self.out_size, self.in_size, self.rank = out_size, in_size, config.offset_rank
        self.tower = nn.Sequential(
            nn.Conv2d(in_channels, config.head_channels, 3, padding=1),
            nn.LeakyReLU(config.leaky_slope),
            nn.Conv2d(config.head_channels, config.head_channels, 3, padding=1),
            nn.LeakyReLU(config.leaky_slope),
        )
        self.hidden = nn.Sequential(nn.Linear(config.head_channels, config.head_hidden), nn.LeakyReLU(config.leaky_slope))
        self.out_factor = nn.Linear(config.head_hidden, out_size * self.rank)
        self.in_factor = nn.Linear(config.head_hidden, in_size * self.rank)
        nn.init.zeros_(self.out_factor.weight)
        nn.init.zeros_(self.out_factor.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # [B, C_feat, h, w] -> [B, C_out, C_in, 1, 1]
        code = self.hidden(self.tower(features).mean(dim=(2, 3)))  # [B, head_hidden]
        u = self.out_factor(code).view(-1, self.out_size, self.rank)  # [B, C_out, r]
        v = self.in_factor(code).view(-1, self.in_size, self.rank)  # [B, C_in, r]
        delta = torch.einsum("bor,bir->boi", u, v) / math.sqrt(self.rank)
        return delta[..., None, None]


class HyperNetwork(nn.Module):
    """H(x_sk, x_{t-1}) -> Delta_t for every tuned layer of G, shapes read from G's weight table."""

    def __init__(self, config: HyperNetworkConfig, weight_shapes: Mapping[str, tuple[int, int, int, int]]) -> None:
        super().__init__()
        self.config = config
        self.layer_names = [n for n in weight_shapes if config.tune_torgb or not n.startswith(TORGB_PREFIX)]
        if not self.layer_names:
            raise ValueError("the generator exposes no layers for the refiner to tune")
        self.backbone = ResNetBackbone(config.backbone)
        self.blocks = nn.ModuleDict(
            {
                _module_key(name): RefinementBlock(config, config.backbone.out_channels, *weight_shapes[name][:2])
                for name in self.layer_names
            }
        )

    def forward(self, sketches: torch.Tensor, current: torch.Tensor) -> Offsets:
        # sketches [B, 1, R, R], current [B, 3, R, R] -> {layer: [B, C_out, C_in, 1, 1]}
        features = self.backbone(torch.cat([sketches, current], dim=1))
        return {name: self.blocks[_module_key(name)](features) for name in self.layer_names}


def accumulate_offsets(total: Offsets | None, step: Offsets) -> Offsets:
    """sum_{i<=t} Delta_i of eq. 6; the earlier sum is detached (HyperStyle trains step by step)."""
    if total is None:
        return dict(step)
    return {name: total[name].detach() + delta for name, delta in step.items()}


def refinement_step(
    generator: nn.Module,
    hypernet: HyperNetwork,
    w: torch.Tensor,
    sketches: torch.Tensor,
    previous: torch.Tensor,
    total: Offsets | None,
) -> tuple[torch.Tensor, Offsets]:
    """One step t: Delta_t = H(x_sk, x_{t-1}); x_t = G(w; theta * (1 + sum_{i<=t} Delta_i)).

    w [B, w_dim], sketches [B, 1, R, R], previous [B, 3, R, R] -> (x_t [B, 3, R, R], offsets).
    """
    total = accumulate_offsets(total, hypernet(sketches, previous.detach()))
    image = generator.synthesis(w, weight_deltas=total, noise_mode="const")
    return image, total
