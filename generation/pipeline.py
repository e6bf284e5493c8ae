"""Sketch2MedI inference: sketch --E--> w --G--> x_0 --H, T steps--> x_T (paper Fig. 1, dashed box)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from formats.errors import InputError
from formats.sketch import CanonicalSketch
from generation.bundle import EMBEDDER, ENCODER, GENERATOR, REFINER, Bundle
from generation.data import sketches_to_tensor, tensor_to_image
from generation.e4e import Encoder
from generation.hyperstyle import HyperNetwork, refinement_step
from generation.signs import SignDirections, require_signs


@dataclass(frozen=True)
class PipelineOutput:
    """What one batch of sketches became (as diffusers' pipelines return a typed output).

    w [B, w_dim]; x_0 [B, 3, R, R] = G(w); steps = (x_1 .. x_T), each [B, 3, R, R]; image = x_T,
    or x_0 when T = 0. Images are in [-1, 1].
    """

    w: torch.Tensor
    x_0: torch.Tensor
    steps: tuple[torch.Tensor, ...]

    @property
    def image(self) -> torch.Tensor:
        return self.steps[-1] if self.steps else self.x_0

    def pictures(self, row: int) -> tuple[np.ndarray, ...]:
        """One sketch's pictures x_0, x_1 .. x_T as uint8 [R, R, 3] each."""
        return tuple(tensor_to_image(x[row]) for x in (self.x_0, *self.steps))


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
    def from_bundle(cls, bundle: Bundle | Path, device: torch.device | str = "cpu") -> "Sketch2MedI":
        """G, E and (when the bundle has one) H, every file checked before any is built;
        T defaults to the steps H was trained with. Takes a folder or an already opened Bundle."""
        bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        with_refiner = bundle.has(REFINER)
        names = [GENERATOR, ENCODER, *([REFINER] if with_refiner else [])]
        bundle.check(names)
        bundle.check_trained_against_generator([ENCODER, REFINER])
        generator = bundle.load(GENERATOR, device)
        encoder = bundle.load(ENCODER, device)
        refiner = bundle.load(REFINER, device) if with_refiner else None
        default_steps = int(bundle.entry(REFINER)["refinement_steps"]) if with_refiner else 0
        return cls(generator, encoder, refiner, default_steps)

    def load_sketch(self, path: Path) -> torch.Tensor:
        """A sketch file in any picture format -> its canonical sketch [1, 1, R, R] in [-1, 1] (DESIGN.md)."""
        return sketches_to_tensor(CanonicalSketch.of(path, self.resolution).pixels[None])

    @torch.no_grad()
    def run(self, sketches: torch.Tensor, steps: int | None = None, w_offsets: torch.Tensor | None = None) -> PipelineOutput:
        """sketches [B, 1, R, R] in [-1, 1] -> w, x_0 and the T refinement steps (T = `steps` or the default).

        `w_offsets` [B, w_dim], or [B, num_ws, w_dim] per style input of G, is added to E's w before G and H
        draw (the sign edits of `generation.signs`); the output's w is then E's w plus the edit's mean over
        the style inputs (what the latent channel reads)."""
        steps = self.default_steps if steps is None else steps
        expected = (1, self.resolution, self.resolution)
        if sketches.dim() != 4 or tuple(sketches.shape[1:]) != expected:
            raise InputError(f"sketches must be [B, {expected[0]}, {expected[1]}, {expected[2]}], got {tuple(sketches.shape)}")
        if steps < 0:
            raise InputError(f"steps must be >= 0, got {steps}")
        if steps > 0 and self.refiner is None:
            raise InputError("this bundle has no refiner H: run with steps=0")
        device = self.encoder.w_avg.device
        sketches = sketches.to(device)
        w = ws = self.encoder(sketches)
        if w_offsets is not None and w_offsets.dim() == 3:
            ws = w[:, None] + w_offsets.to(device)
            w = ws.mean(1)
        elif w_offsets is not None:
            w = ws = w + w_offsets.to(device)
        current = x_0 = self.generator.synthesis(ws, noise_mode="const")
        refined: list[torch.Tensor] = []
        total = None
        for _ in range(steps):
            current, total = refinement_step(self.generator, self.refiner, ws, sketches, current, total)
            refined.append(current)
        return PipelineOutput(w=w, x_0=x_0, steps=tuple(refined))



@dataclass(frozen=True, eq=False)
class QueryModels:
    """One opened bundle's query-side networks, built once per process: the pipeline (E, G, H) and C.

    The search engine, `/v1/generate` and the index refresh share them; S, which only the archive
    side needs, is loaded where sketches are synthesised (`indexing.vectors.ArchiveModels.around`).
    `signs` holds the bundle's sign directions (None when it has none).
    """

    bundle: Bundle
    pipeline: Sketch2MedI
    embedder: nn.Module
    signs: SignDirections | None = None

    @classmethod
    def load(cls, bundle: Bundle | Path, device: torch.device | str = "cpu") -> "QueryModels":
        """E, G, H and C of a bundle (folder or opened), every file checked before any is built."""
        bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        bundle.check([EMBEDDER])
        pipeline = Sketch2MedI.from_bundle(bundle, device)
        return cls(bundle, pipeline, bundle.load_embedder(device), SignDirections.from_bundle(bundle))

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def resolution(self) -> int:
        return self.pipeline.resolution

    @property
    def device(self) -> torch.device:
        return self.pipeline.encoder.w_avg.device

    def sign_strengths(self, asked: Mapping[str, float] | None) -> dict[str, float]:
        """A query's sign strengths checked against the bundle's signs (SignError naming the known ones)."""
        return require_signs(self.signs, asked or {})

    def w_offsets(self, strengths: list[Mapping[str, float]], routes: tuple[str, ...] | None = None) -> torch.Tensor | None:
        """[B, num_ws, w_dim] W edits of checked strengths on each sign's chosen style inputs of G, one row per
        sketch (zero unless `routes`, by default the signs' chosen ones, include W); None when no sketch has signs."""
        if self.signs is None or not any(strengths):
            return None
        num_ws = self.pipeline.generator.synthesis.num_ws
        return torch.stack([self.signs.style_offset(one, num_ws, routes) for one in strengths])

    def generate(self, sketches: np.ndarray, steps: int | None = None,
                 signs: list[Mapping[str, float]] | None = None, routes: tuple[str, ...] | None = None) -> PipelineOutput:
        """Canonical sketches uint8 [B, R, R] -> the pipeline's output (`steps` None: H's own T; 0: x_0 only),
        each sketch's checked sign strengths (`signs`, one mapping per sketch) applied in W when `routes`
        (by default the route a search ranks by) include it."""
        return self.pipeline.run(sketches_to_tensor(sketches), steps, self.w_offsets(signs or [], routes))

    def pictures(self, sketch: CanonicalSketch, steps: int | None = None,
                 signs: Mapping[str, float] | None = None) -> tuple[np.ndarray, ...]:
        """One canonical sketch's pictures, uint8 [R, R, 3] each: x_0, then x_1 .. x_T (no archive involved).
        Its signs are always drawn in W: a picture shows them whichever route a search ranks by."""
        return self.generate(sketch.pixels[None], steps, [self.sign_strengths(signs)], ("w",)).pictures(0)
