"""Each index build's reference distribution: the raw channel scores of random pairs of archive cases.

A score such as a fused -3.76 means nothing to a clinician; its place among the scores of ordinary
pairs of archive cases does ("closer in outline than 97 % of archive cases"). The build computes
them once, when it is made, from a sample of the very vectors it indexes (one case as the query,
with its stored sketch as the shape query, another as the archive side, as the calibration does),
and keeps every pair's three raw channel scores, so that a fused percentile can be read for any
channel weights later (a refine re-weights the channels). A build made before this has none: its
searches go on, without percentiles.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import faiss
import numpy as np
from sqlalchemy.orm import Session

from indexing.models import IndexBuild, IndexReference
from indexing.shape import ShapeConfig, query_vectors
from indexing.vectors import CHANNELS, SHAPE

REFERENCE_CASES = 400  # cases sampled: up to 400 * 399 ordered pairs, of which MAX_PAIRS are kept
MAX_PAIRS = 20_000  # 240 KB a build; a percentile from 20,000 pairs is within 0.7 points (95 %)


@dataclass(frozen=True)
class ReferenceScores:
    """Raw channel scores of archive pairs, float32 [M, len(CHANNELS)] in CHANNELS order."""

    scores: np.ndarray

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, self.scores.astype(np.float32), allow_pickle=False)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ReferenceScores":
        return cls(np.load(io.BytesIO(data), allow_pickle=False))


def pair_scores(channels: dict[str, np.ndarray], shape_queries: np.ndarray, seed: int,
                max_pairs: int = MAX_PAIRS) -> ReferenceScores | None:
    """Every channel's score between distinct cases i (query side) and j (archive side) of a sample;
    None with fewer than two cases. `channels` is archive side ([DT_A, A/|A|] for shape)."""
    count = len(shape_queries)
    if count < 2:
        return None
    rng = np.random.default_rng(seed)
    matrices = [(shape_queries if name == SHAPE else channels[name]) @ channels[name].T for name in CHANNELS]
    rows, columns = np.nonzero(~np.eye(count, dtype=bool))
    if len(rows) > max_pairs:
        keep = rng.choice(len(rows), size=max_pairs, replace=False)
        rows, columns = rows[keep], columns[keep]
    return ReferenceScores(np.stack([matrix[rows, columns] for matrix in matrices], axis=1).astype(np.float32))


def reference_sample(index: faiss.Index, seed: int) -> np.ndarray:
    """The ids of the build's cases whose pairs make its reference (int64, sorted)."""
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ids, size=min(REFERENCE_CASES, len(ids)), replace=False)) if len(ids) else ids


def record_reference(session: Session, build: IndexBuild, channels: dict[str, np.ndarray], sketches: np.ndarray,
                     shape: ShapeConfig, seed: int) -> None:
    """Score the sampled cases' pairs (their stored vectors, archive side, and stored sketches) and keep
    the scores with the build, in the transaction that records it."""
    reference = pair_scores(channels, query_vectors(sketches, shape), seed) if channels and len(sketches) else None
    if reference is not None:
        session.add(IndexReference(build_id=build.id, pairs=len(reference.scores), scores=reference.to_bytes()))
        session.flush()


def load_reference(session: Session, build_id: int) -> ReferenceScores | None:
    """The build's reference scores, or None for a build made without them."""
    row = session.get(IndexReference, build_id)
    return None if row is None else ReferenceScores.from_bytes(row.scores)
