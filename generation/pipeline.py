"""Sketch2MedI inference: sketch --E--> w --G--> x_0 --H, T steps--> x_T (paper Fig. 1, dashed box)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from formats.sketch import canonical_sketch
from generation.bundle import network_config, read_bundle_info
from generation.data import sketch_to_tensor
from generation.e4e import ENCODER_NETWORK, Encoder, generator_digest, load_encoder
from generation.hyperstyle import REFINER_NETWORK, HyperNetwork, load_refiner, refinement_step


class Sketch2MedI(nn.Module):
    """E, G and H together; `run` is batched, deterministic (constant noise, eval mode) and device-agnostic."""

    def __init__(self, generator: nn.Module, encoder: Encoder, refiner: HyperNetwork | None, default_steps: int) -> None:
        super().__init__()
        if encoder.config.w_dim != generator.config.w_dim:
            raise ValueError(f"encoder writes w_dim={encoder.config.w_dim}, generator reads {generator.config.w_dim}")
        self.generator = generator
        self.encoder = encoder
        self.refiner = refiner
        self.default_steps = default_steps if refiner is not None else 0
        self.eval()

    @property
    def resolution(self) -> int:
        return self.generator.config.resolution

    @classmethod
    def from_bundle(cls, path: Path, device: torch.device | str = "cpu") -> "Sketch2MedI":
        """Load G, E and (when the bundle has one) H; T defaults to the steps H was trained with."""
        from generation.stylegan2 import load_generator

        path = Path(path)
        networks = read_bundle_info(path).get("networks", {})
        check_trained_against(path, networks, [ENCODER_NETWORK, REFINER_NETWORK])
        generator = load_generator(path, device)
        encoder = load_encoder(path, device)
        refiner = None
        default_steps = 0
        if REFINER_NETWORK in networks:
            refiner = load_refiner(path, generator.synthesis.weight_shapes(), device)
            default_steps = int(networks[REFINER_NETWORK]["refinement_steps"])
        return cls(generator, encoder, refiner, default_steps)

    def load_sketch(self, path: Path) -> torch.Tensor:
        """A sketch file in any picture format -> its canonical sketch [1, 1, R, R] in [-1, 1] (DESIGN.md)."""
        return sketch_to_tensor(canonical_sketch(path, self.resolution)).unsqueeze(0)

    @torch.no_grad()
    def run(self, sketches: torch.Tensor, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """sketches [B, 1, R, R] in [-1, 1] -> (w [B, w_dim], x_0 [B, 3, R, R], [x_1 .. x_T])."""
        steps = self.default_steps if steps is None else steps
        expected = (1, self.resolution, self.resolution)
        if sketches.dim() != 4 or tuple(sketches.shape[1:]) != expected:
            raise ValueError(f"sketches must be [B, {expected[0]}, {expected[1]}, {expected[2]}], got {tuple(sketches.shape)}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if steps > 0 and self.refiner is None:
            raise ValueError("this bundle has no refiner H: run with steps=0")
        device = self.encoder.w_avg.device
        sketches = sketches.to(device)
        w = self.encoder(sketches)
        current = x_0 = self.generator.synthesis(w, noise_mode="const")
        refined: list[torch.Tensor] = []
        total = None
        for _ in range(steps):
            current, total = refinement_step(self.generator, self.refiner, w, sketches, current, total)
            refined.append(current)
        return w, x_0, refined


def sketch_resolution(bundle: Path) -> int:
    """The side E reads sketches at, from `bundle.json` alone (so sketches are checked before any model loads)."""
    return int(network_config(Path(bundle), ENCODER_NETWORK)["resolution"])


def check_trained_against(bundle: Path, networks: dict, names: list[str]) -> None:
    """Refuse a bundle whose E or H was trained against a different G (they would silently misfire)."""
    digest = None
    for name in names:
        recorded = networks.get(name, {}).get("generator_sha256")
        if recorded is None:
            continue
        digest = digest or generator_digest(bundle)
        if recorded != digest:
            raise ValueError(f"the bundle's {name} was trained against another generator than the one in {bundle}; "
                             f"retrain it with `s2m train {name}`")
