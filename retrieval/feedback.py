"""Relevance feedback: a search refined by the cases its user marked "right" and "not this".

- Rocchio, on each channel: the query vector moves toward the mean of the marked-right cases'
  vectors and away from the marked-wrong ones', q' = a q + b mean(right) - c mean(wrong), rescaled
  to the length q had (the build's calibration assumes query vectors of that size). A case's
  query-side vectors are its stored appearance and latent vectors and its stored sketch's shape
  query vector (what a query by example uses).
- The channels a refined search ranks by: once a case is marked right, the weights of
  `FeedbackConfig.marked_weights`, one setting chosen on validation queries like the first search's
  weights (appearance alone: a clinician marks cases for their findings, which C sees and a contour
  does not). Re-weighting each search's channels by how well each ranked its marks was measured and
  dropped: from at most ten marks it could not tell which channel carries the user's notion
  (validation precision@10 after one round 0.68 at best, against 0.83; docs/benchmarks.md).
- Cases marked right stay first in every refinement after it, in the order they were marked; cases
  marked "not this" are excluded from the refined search and from every refinement after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexing.fused_index import Build, ChannelWeights
from indexing.shape import query_vectors
from indexing.vectors import APPEARANCE, CHANNELS, LATENT, SHAPE
from retrieval.engine import Query, SearchEngine
from retrieval.filters import Filters

APPEARANCE_ONLY = ChannelWeights(appearance=1.0, latent=0.0, shape=0.0)


@dataclass(frozen=True)
class FeedbackConfig:
    """Rocchio's weights and the refined search's channel weights, chosen on validation queries by
    `s2m eval retrieval --feedback` (the grid of `retrieval/feedback_eval.py`, the seen drawer styles'
    validation queries on a 300-phantom archive with the shipped bundle): on the test queries diagnosis
    precision@10 went 0.27 -> 0.81 in one round (docs/benchmarks.md, issue 35). The marked cases
    outweigh the sketch: a user who marked cases asks for more like them."""

    original: float = 1.0  # a
    toward: float = 8.0  # b
    away: float = 4.0  # c
    marked_weights: ChannelWeights | None = APPEARANCE_ONLY  # None: a refined search keeps its search's weights

    def __post_init__(self) -> None:
        if min(self.original, self.toward, self.away) < 0 or self.original == 0:
            raise ValueError("feedback weights must be >= 0, the original query's above 0")


@dataclass(frozen=True)
class Refinement:
    """What a round of marks makes of a search: its moved query vectors, channel weights, the cases
    kept first (marked right, in order) and the cases excluded (marked not this)."""

    vectors: dict[str, np.ndarray]
    weights: ChannelWeights
    keep: tuple[int, ...]
    exclude: tuple[int, ...]

    def query(self, k: int, filters: Filters) -> Query:
        """The refined search, k hits under `filters` (the search's own)."""
        return Query(None, k, filters, weights=self.weights, vectors=self.vectors, exclude=self.exclude, keep=self.keep)


def marks_as_shown(shown: Sequence[int], like: Sequence[int], unlike: Sequence[int]) -> tuple[list[int], list[int]]:
    """The marked-right ids in the order the search showed them (the order they are kept first in), and the
    marked ids that were not among `shown` (sorted; the caller refuses them)."""
    liked = set(like)
    return [image_id for image_id in shown if image_id in liked], sorted((liked | set(unlike)) - set(shown))


def case_vectors(engine: SearchEngine, build: Build, ids: Sequence[int]) -> dict[str, np.ndarray]:
    """The query side of archive cases `ids` on each channel (what a query by example uses), float32
    [n, D_c], missing cases left out."""
    wanted = np.array(sorted(set(ids)), dtype=np.int64)
    stored = engine.stored_vectors(build, wanted)
    found, rows = stored.rows(wanted)
    sketches = np.stack([stored.sketches[i] for i in found]) if found else np.zeros((0, build.shape.side, build.shape.side), np.uint8)
    return {APPEARANCE: stored.appearance[rows], LATENT: stored.latent[rows], SHAPE: query_vectors(sketches, build.shape)}


def rocchio(query: np.ndarray, right: np.ndarray, wrong: np.ndarray, config: FeedbackConfig) -> np.ndarray:
    """One channel's moved query vector, as long as `query` was."""
    moved = config.original * query.astype(np.float64)
    if len(right):
        moved += config.toward * right.mean(axis=0)
    if len(wrong):
        moved -= config.away * wrong.mean(axis=0)
    length, before = np.linalg.norm(moved), np.linalg.norm(query)
    return (moved * (before / length) if length > 0 else query).astype(np.float32)


def refine(engine: SearchEngine, build: Build, vectors: dict[str, np.ndarray], weights: ChannelWeights,
           like: Sequence[int], unlike: Sequence[int], exclude: Sequence[int] = (), keep: Sequence[int] = (),
           config: FeedbackConfig = FeedbackConfig()) -> Refinement:
    """One round: the search given by `vectors` and `weights` (which kept `keep` first and excluded
    `exclude`) refined by the marks; `like` in the order the user should see them kept."""
    right, wrong = case_vectors(engine, build, like), case_vectors(engine, build, unlike)
    moved = {name: rocchio(np.asarray(vectors[name], np.float32), right[name], wrong[name], config) for name in CHANNELS}
    kept = tuple(dict.fromkeys(i for i in (*keep, *like) if i not in set(unlike)))
    ranked_by = config.marked_weights if like and config.marked_weights is not None else weights
    return Refinement(moved, ranked_by, kept, tuple(sorted({*exclude, *unlike})))
