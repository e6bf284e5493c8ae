"""Choosing the read-out that serves a trained C, without the held-out queries: the candidate
read-outs scored by leave-one-out k-NN accuracy on the labelled bank (from the training split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import torch
import torch.nn.functional as F

from generation.moco.probe import ProbeSet, weighted_vote
from generation.moco.readout import Readout, region_descriptor

if TYPE_CHECKING:
    from generation.moco.model import Embedder

CANDIDATE_STAGES = (2, 3, 4)
CANDIDATE_GRIDS = (1, 2, 3, 4, 6)
MAX_DESCRIPTOR_DIM = 16384  # 64 KiB of float32 per archive image in the index


def candidate_readouts(stage_shapes: dict[int, tuple[int, int, int]]) -> list[Readout]:
    """Read-outs worth trying for a trunk whose stages give activations [C, H, W] (`stage_shapes`)."""
    return [
        Readout(stage, grid)
        for stage in CANDIDATE_STAGES
        for grid in CANDIDATE_GRIDS
        if grid <= min(stage_shapes[stage][1:]) and stage_shapes[stage][0] * grid * grid <= MAX_DESCRIPTOR_DIM
    ]


def leave_one_out_knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int, temperature: float, num_classes: int) -> float:
    """Weighted k-NN accuracy of each bank item against the rest of the bank [N, D] (itself left out)."""
    unit = F.normalize(features.float(), dim=1)
    similarity = unit @ unit.t()  # [N, N]
    similarity.fill_diagonal_(-float("inf"))
    predictions = weighted_vote(similarity, labels, min(k, len(unit) - 1), temperature, num_classes)
    return float((predictions == labels).float().mean())


@dataclass(frozen=True)
class ReadoutChoice:
    """The chosen read-out and every candidate's mean leave-one-out accuracy over the label columns."""

    readout: Readout
    scores: dict[Readout, float]

    def as_record(self) -> dict[str, object]:
        return {"stage": self.readout.stage, "grid": self.readout.grid, "selected_by": "leave-one-out k-NN on the probe bank",
                "bank_scores": {f"{r.stage}:{r.grid}": round(s, 4) for r, s in self.scores.items()}}


def select_readout(
    descriptors: dict[Readout, torch.Tensor], labels: Iterable[tuple[torch.Tensor, int]], k: int, temperature: float,
) -> ReadoutChoice:
    """The read-out whose bank descriptors [N, D] give the best mean leave-one-out k-NN accuracy.

    `labels`: (class ids [N], class count) per label column. Ties go to the smaller descriptor.
    """
    columns = list(labels)
    if not descriptors or not columns:
        raise ValueError("read-out selection needs at least one candidate and one label column")
    scores = {
        readout: sum(leave_one_out_knn_accuracy(features, y, k, temperature, n) for y, n in columns) / len(columns)
        for readout, features in descriptors.items()
    }
    best = max(scores, key=lambda r: (round(scores[r], 6), -descriptors[r].shape[1]))
    return ReadoutChoice(best, scores)


def batched_descriptors(
    stage_features: Callable[[torch.Tensor], list[torch.Tensor]], images: torch.Tensor, readouts: list[Readout], batch_size: int,
) -> dict[Readout, torch.Tensor]:
    """Descriptors [N, D] of `images` for several read-outs, running the trunk once per batch."""
    parts: dict[Readout, list[torch.Tensor]] = {readout: [] for readout in readouts}
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            features = stage_features(images[start : start + batch_size])
            for readout in readouts:
                parts[readout].append(region_descriptor(features, readout).float().cpu())
    return {readout: torch.cat(chunks) for readout, chunks in parts.items()}


def choose_readout(embedder: "Embedder", probe: ProbeSet, k: int, temperature: float) -> ReadoutChoice:
    """The best candidate read-out of `embedder` by leave-one-out k-NN on the probe's bank alone."""
    device = next(embedder.parameters()).device
    candidates = candidate_readouts(embedder.stage_shapes())
    descriptors = batched_descriptors(
        lambda images: embedder.stage_features(images.to(device)), probe.bank_images, candidates, embedder.config.batch_size
    )
    labels = [(probe.bank_labels[column], len(names)) for column, names in probe.classes.items()]
    return select_readout(descriptors, labels, k, temperature)
