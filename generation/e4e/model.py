"""The encoder E and the latent discriminator D_w of e4e (Tov et al. 2021), for one w."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from generation.resnet import ResNetBackbone
from generation.e4e.config import EncoderConfig, LatentDiscriminatorConfig


class Encoder(nn.Module):
    """Sketch -> w = w_avg + offset; the offset head is zero-initialised so E starts at G's mean w.

    `w_avg` is a buffer copied from G's mapping network (`set_latent_average`) and saved with E,
    so a bundle's encoder is tied to the generator it was trained against.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNetBackbone(config.backbone)
        self.head = nn.Sequential(
            nn.Linear(config.backbone.out_channels, config.head_hidden),
            nn.LeakyReLU(config.leaky_slope),
            nn.Linear(config.head_hidden, config.w_dim),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def set_latent_average(self, w_avg: torch.Tensor) -> None:
        if w_avg.shape != (self.config.w_dim,):
            raise ValueError(f"w_avg has shape {tuple(w_avg.shape)}, the encoder expects ({self.config.w_dim},)")
        self.w_avg.copy_(w_avg.detach())

    def forward(self, sketches: torch.Tensor) -> torch.Tensor:
        # [B, 1, R, R] in [-1, 1] -> [B, w_dim]
        features = self.backbone(sketches).mean(dim=(2, 3))  # [B, C_feat]
        return self.w_avg + self.head(features)


class LatentDiscriminator(nn.Module):
    """Tells mapping(z) (real) from E(x_sk) (fake) so that E's codes stay inside W."""

    def __init__(self, config: LatentDiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        for _ in range(config.num_layers - 1):
            layers += [nn.Linear(config.w_dim, config.w_dim), nn.LeakyReLU(config.leaky_slope)]
        layers.append(nn.Linear(config.w_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # [B, w_dim] -> [B] logits
        return self.net(w).squeeze(-1)


def r1_penalty(discriminator: nn.Module, w_real: torch.Tensor) -> torch.Tensor:
    """E_w ||grad_w D(w)||^2 on real codes (eq. 3 without gamma/2); differentiable for D's update."""
    w_real = w_real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(w_real).sum(), w_real, create_graph=True)
    return grad.pow(2).sum(dim=1).mean()


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """-log D(w) - log(1 - D(E(x))) of eq. 3 with D = sigmoid(logits): the non-saturating GAN loss."""
    return F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()


def encoder_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """L_adv^E = -log D(E(x)) of eq. 4."""
    return F.softplus(-logits_fake).mean()
