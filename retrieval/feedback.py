"""Relevance feedback: a search refined by the cases its user marked "right" and "not this".

Two established rules, on the engine's own channels:
- Rocchio, on each channel: the query vector moves toward the mean of the marked-right cases'
  vectors and away from the marked-wrong ones', q' = a q + b mean(right) - c mean(wrong), rescaled
  to the length q had (the build's calibration assumes query vectors of that size). A case's
  query-side vectors are its stored appearance and latent vectors and its stored sketch's shape
  query vector (what a query by example uses).
- Channel re-weighting: each channel's weight moves by how well that channel's moved query ranks the
  marked cases, each judged left out (its score against the query moved by all the other marks):
  w_c' = max(0, w_c + r (2 AUC_c - 1)), AUC_c the fraction of (right, wrong) pairs scored in the right
  order (ties a half). The refined search ranks by the moved query, which sits by the right cases,
  so a channel is judged there and not by how the sketch's query ranked the marks (that judged the
  appearance channel by the sketch's look and took its weight away). A channel that would find a
  held-out right case above the wrong ones gains weight, one that would not loses it; with only one
  kind of mark the weights stay.
Cases marked "not this" are excluded from the refined search and from every refinement after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from indexing.fused_index import Build, ChannelWeights
from indexing.shape import query_vectors
from indexing.vectors import APPEARANCE, CHANNELS, LATENT, SHAPE
from retrieval.engine import SearchEngine


@dataclass(frozen=True)
class FeedbackConfig:
    """Rocchio's weights and the re-weighting's rate, chosen on validation queries by `s2m eval retrieval
    --feedback` (the grid of `retrieval/feedback_eval.py`, the seen drawer styles' validation queries on a
    300-phantom archive with the shipped bundle): on the test queries diagnosis precision@10 went 0.27 ->
    0.66 in one round, 0.83 in two (docs/benchmarks.md, issue 35). The marked cases outweigh the sketch:
    a user who marked cases asks for more like them."""

    original: float = 1.0  # a
    toward: float = 4.0  # b
    away: float = 1.0  # c
    reweight: float = 4.0  # r

    def __post_init__(self) -> None:
        if min(self.original, self.toward, self.away, self.reweight) < 0 or self.original == 0:
            raise ValueError("feedback weights must be >= 0, the original query's above 0")


@dataclass(frozen=True)
class Refinement:
    """What a round of marks makes of a search: its moved query vectors, channel weights and exclusions."""

    vectors: dict[str, np.ndarray]
    weights: ChannelWeights
    exclude: tuple[int, ...]


def case_vectors(engine: SearchEngine, build: Build, ids: Sequence[int]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Archive cases `ids` on each channel, float32 [n, D_c] (missing cases left out): their query side
    (what a query by example uses) and their archive side (what a channel scores a query against)."""
    wanted = np.array(sorted(set(ids)), dtype=np.int64)
    stored = engine.stored_vectors(build, wanted)
    found, rows = stored.rows(wanted)
    sketches = np.stack([stored.sketches[i] for i in found]) if found else np.zeros((0, build.shape.side, build.shape.side), np.uint8)
    query_side = {APPEARANCE: stored.appearance[rows], LATENT: stored.latent[rows], SHAPE: query_vectors(sketches, build.shape)}
    return query_side, {APPEARANCE: stored.appearance[rows], LATENT: stored.latent[rows], SHAPE: stored.shape[rows]}


def rocchio(query: np.ndarray, right: np.ndarray, wrong: np.ndarray, config: FeedbackConfig) -> np.ndarray:
    """One channel's moved query vector, as long as `query` was."""
    moved = config.original * query.astype(np.float64)
    if len(right):
        moved += config.toward * right.mean(axis=0)
    if len(wrong):
        moved -= config.away * wrong.mean(axis=0)
    length, before = np.linalg.norm(moved), np.linalg.norm(query)
    return (moved * (before / length) if length > 0 else query).astype(np.float32)


def ranking_agreement(right: Sequence[float], wrong: Sequence[float]) -> float | None:
    """The fraction of (right, wrong) pairs scored in the right order (ties a half); None without both."""
    if not len(right) or not len(wrong):
        return None
    right_scores, wrong_scores = np.asarray(right)[:, None], np.asarray(wrong)[None, :]
    return float(((right_scores > wrong_scores) + 0.5 * (right_scores == wrong_scores)).mean())


def held_out_scores(query: np.ndarray, right: np.ndarray, wrong: np.ndarray, right_archive: np.ndarray,
                    wrong_archive: np.ndarray, config: FeedbackConfig) -> tuple[list[float], list[float]]:
    """One channel's score of each marked case against the query moved by all the other marks (leave
    one out): how well the channel's moved query would find that case had it not been marked."""
    def without(rows: np.ndarray, i: int) -> np.ndarray:
        return np.delete(rows, i, axis=0)
    return ([float(right_archive[i] @ rocchio(query, without(right, i), wrong, config)) for i in range(len(right))],
            [float(wrong_archive[j] @ rocchio(query, right, without(wrong, j), config)) for j in range(len(wrong))])


def reweighted(weights: ChannelWeights, agreements: Mapping[str, float | None], config: FeedbackConfig) -> ChannelWeights:
    """Channel weights moved by each channel's ranking agreement on the marks (None: that channel's weight stays)."""
    moved = {}
    for name in CHANNELS:
        agreement = agreements[name]
        moved[name] = weights.of(name) if agreement is None else max(0.0, weights.of(name) + config.reweight * (2 * agreement - 1))
    return ChannelWeights(**moved) if any(moved.values()) else weights


def refine(engine: SearchEngine, build: Build, vectors: Mapping[str, np.ndarray], weights: ChannelWeights,
           like: Sequence[int], unlike: Sequence[int], exclude: Sequence[int] = (),
           config: FeedbackConfig = FeedbackConfig()) -> Refinement:
    """One round: the search given by `vectors` and `weights` refined by the marks."""
    (right, right_archive), (wrong, wrong_archive) = case_vectors(engine, build, like), case_vectors(engine, build, unlike)
    moved, agreements = {}, {}
    for name in CHANNELS:
        query = np.asarray(vectors[name], np.float32)
        moved[name] = rocchio(query, right[name], wrong[name], config)
        agreements[name] = ranking_agreement(*held_out_scores(query, right[name], wrong[name], right_archive[name],
                                                              wrong_archive[name], config))
    return Refinement(moved, reweighted(weights, agreements, config), tuple(sorted({*exclude, *unlike})))
