"""What a search answers: ranked hits with their exact channel scores, the query's pictures and signs.

Kept apart from the engine that computes them, so that the API's and the CLI's views read them alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from generation.signs import AppliedSign
from indexing.cases import CaseRecord
from indexing.models import Image
from retrieval.filters import Filters


@dataclass(frozen=True)
class ChannelScores:
    """Exact per-channel scores: cosines for appearance and latent, minus the chamfer distance (px) for shape."""

    appearance: float
    latent: float
    shape: float


@dataclass(frozen=True)
class Hit:
    rank: int
    image_id: int
    score: float  # the fused, calibrated score the ranking is by
    channels: ChannelScores
    case: CaseRecord
    stored_path: str
    width: int
    height: int
    original_name: str | None = None  # only when ingest kept it (indexing/ingest/names.py)

    @classmethod
    def from_row(cls, rank: int, row: Image, score: float, channels: ChannelScores) -> "Hit":
        """A ranked case with everything a response shows of it, so that answering needs no second read."""
        return cls(rank=rank, image_id=row.id, score=score, channels=channels, case=CaseRecord.of_row(row),
                   stored_path=row.stored_path, width=row.width, height=row.height, original_name=row.original_name)


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[Hit, ...]
    timings_ms: dict[str, float]  # stage -> ms (batched stages: the batch's time)
    sketch: np.ndarray | None  # uint8 [R, R], the canonical sketch the models read (by example: the case's stored sketch; by vectors: None)
    image: np.ndarray | None  # uint8 [R, R, 3], the generated x_T (x_0 unrefined); None for a query by example
    build_id: int
    filters: Filters
    steps: tuple[np.ndarray, ...] = ()  # uint8 [R, R, 3] each: x_0, x_1 .. x_T (empty by example)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # the query side of each channel, float32 [D_c]
    signs: tuple[AppliedSign, ...] = ()  # the signs applied, and how far each moved the query
