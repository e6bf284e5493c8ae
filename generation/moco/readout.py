"""How C's activations become the descriptor the retrieval index searches: a grid of regions.

Throat photographs are taken in one standard view (uvula centred, tonsils either side, tongue
below), so two cases can be compared region by region. A global average over the frame mixes a
few pixels of exudate on a small tonsil with the tongue, palate and wall around it; a grid keeps
where a finding is. A read-out pools one ResNet stage's activations to grid x grid cells,
L2-normalises each cell and scales the whole to unit length, so the cosine of two descriptors is
the mean of their cells' cosines. Stage 4 with a 1 x 1 grid is MoCo's own pooled vector.

Which read-out serves a trained C is chosen by `generation.moco.readout_choice`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

STAGES = (1, 2, 3, 4)


@dataclass(frozen=True)
class Readout:
    """Stage (1..4, after the ResNet stem) and cells per side of the pooling grid."""

    stage: int
    grid: int

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"read-out stage must be one of {STAGES}, got {self.stage}")
        if self.grid < 1:
            raise ValueError(f"read-out grid must be at least 1 cell per side, got {self.grid}")

    def __str__(self) -> str:
        return f"stage {self.stage}, {self.grid}x{self.grid} grid"

    @classmethod
    def parse(cls, text: str) -> "Readout":
        """'STAGE:GRID', e.g. '3:6'."""
        try:
            stage, grid = (int(part) for part in text.split(":"))
        except ValueError as error:
            raise ValueError(f"read-out {text!r} is not STAGE:GRID (e.g. 3:6)") from error
        return cls(stage, grid)


def region_descriptor(stage_features: list[torch.Tensor], readout: Readout) -> torch.Tensor:
    """[N, C * grid^2] unit vectors from `stage_features` (stem first, then stages 1..4)."""
    activations = stage_features[readout.stage]  # [N, C, H, W]
    if readout.grid > min(activations.shape[-2:]):
        raise ValueError(f"a {readout.grid}x{readout.grid} grid is finer than stage {readout.stage}'s "
                         f"{tuple(activations.shape[-2:])} activations")
    cells = F.adaptive_avg_pool2d(activations, readout.grid)  # [N, C, g, g]
    return F.normalize(cells, dim=1).flatten(1) / readout.grid
