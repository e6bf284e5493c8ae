"""Relevance feedback measured: a simulated user marks a search's hits and refines it, round after round.

The user of issue 35's protocol: of a search's top k hits, those whose diagnosis is the query case's
are marked right, the rest not this; `refine_round` then refines each search exactly as
`POST /v1/queries/{id}/refine` does (`retrieval.feedback.refine` on the search's own vectors, the
weights it ranked by; the right cases of every earlier round stay first and the "not this" cases
excluded), so the measured rule is the served one. The constants are chosen on validation queries
(`choose_config` over `GRID`) and reported on others. Query sketches come from the caller, so this
module draws nothing itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexing.fused_index import ChannelWeights
from retrieval.engine import DEFAULT_K, Query, SearchEngine, SearchResult
from retrieval.feedback import APPEARANCE_ONLY, FeedbackConfig, refine

# Rocchio's pulls, and the channel weights a refined search ranks by (None: the search's own)
GRID = {"toward": (2.0, 4.0, 8.0), "away": (0.0, 1.0, 2.0, 4.0),
        "marked_weights": (None, APPEARANCE_ONLY, ChannelWeights(appearance=1.0, latent=0.1, shape=0.0),
                           ChannelWeights(appearance=1.0, latent=0.0, shape=0.1))}
BATCH = 32


@dataclass(frozen=True)
class Searched:
    """One step of a query's chain: its result, the weights it ranked by, the cases it kept first and excluded."""

    result: SearchResult
    weights: ChannelWeights
    keep: tuple[int, ...] = ()
    exclude: tuple[int, ...] = ()


def _search(engine: SearchEngine, queries: list[Query]) -> list[SearchResult]:
    return [result for start in range(0, len(queries), BATCH) for result in engine.search_many(queries[start : start + BATCH])]


def first_searches(engine: SearchEngine, sketches: Sequence[np.ndarray], weights: ChannelWeights,
                   k: int = DEFAULT_K) -> list[Searched]:
    """Each sketch searched as the service would (networks once per batch), ranked by `weights`."""
    return [Searched(result, weights) for result in _search(engine, [Query(sketch, k, weights=weights) for sketch in sketches])]


def marks(result: SearchResult, diagnosis: str, k: int = DEFAULT_K) -> tuple[list[int], list[int]]:
    """The simulated user's marks on the top k: (right, not this) image ids."""
    top = result.hits[:k]
    return ([hit.image_id for hit in top if hit.case.diagnosis == diagnosis],
            [hit.image_id for hit in top if hit.case.diagnosis != diagnosis])


def refine_round(engine: SearchEngine, steps: Sequence[Searched], diagnoses: Sequence[str], config: FeedbackConfig,
                 k: int = DEFAULT_K) -> list[Searched]:
    """One more round of marks on each step's top k, searched again (the API's refinement of a refinement)."""
    build = engine.build
    refined, queries = [], []
    for step, diagnosis in zip(steps, diagnoses):
        like, unlike = marks(step.result, diagnosis, k)
        moved = refine(engine, build, step.result.vectors, step.weights, like, unlike, step.exclude, step.keep, config)
        refined.append(moved)
        queries.append(moved.query(k, step.result.filters))
    return [Searched(result, moved.weights, moved.keep, moved.exclude) for result, moved in zip(_search(engine, queries), refined)]


def rounds(engine: SearchEngine, firsts: Sequence[Searched], diagnoses: Sequence[str], config: FeedbackConfig,
           count: int, k: int = DEFAULT_K) -> list[list[Searched]]:
    """The first searches and `count` rounds of refinement after them: [round][query]."""
    chain = [list(firsts)]
    for _ in range(count):
        chain.append(refine_round(engine, chain[-1], diagnoses, config, k))
    return chain


def diagnosis_precision(steps: Sequence[Searched], diagnoses: Sequence[str], k: int = DEFAULT_K) -> np.ndarray:
    """Per query: the share of the top k whose diagnosis is the query case's."""
    return np.array([sum(hit.case.diagnosis == d for hit in s.result.hits[:k]) / k for s, d in zip(steps, diagnoses)])


def exact_recall(steps: Sequence[Searched], image_ids: Sequence[int], k: int = DEFAULT_K) -> np.ndarray:
    """Per query: 1 if the drawn archive image is in the top k."""
    return np.array([float(any(hit.image_id == i for hit in s.result.hits[:k])) for s, i in zip(steps, image_ids)])


def excluded_returned(steps: Sequence[Searched]) -> int:
    """How many hits of these refined searches were marked not this in an earlier round (the rule: none)."""
    return sum(hit.image_id in set(s.exclude) for s in steps for hit in s.result.hits)


def choose_config(engine: SearchEngine, similar: Sequence[Searched], diagnoses: Sequence[str],
                  exact: Sequence[Searched] = (), exact_diagnoses: Sequence[str] = (), exact_ids: Sequence[int] = (),
                  k: int = DEFAULT_K, grid: dict[str, tuple[float, ...]] = GRID) -> tuple[FeedbackConfig, dict[str, dict]]:
    """The grid's constants with the best mean diagnosis precision@k after one round on these (validation)
    similar-case queries, among those that keep the exact-case queries' recall@k (issue 35's second goal;
    all of them if none does); the first of equals in grid order (smaller steps first). Also every
    config's validation figures."""
    recall_before = float(exact_recall(exact, exact_ids, k).mean()) if len(exact) else 0.0
    figures: dict[FeedbackConfig, dict[str, float]] = {}
    for toward, away, marked_weights in itertools.product(grid["toward"], grid["away"], grid["marked_weights"]):
        config = FeedbackConfig(toward=toward, away=away, marked_weights=marked_weights)
        after = refine_round(engine, similar, diagnoses, config, k)
        figure = {"diagnosis_precision@10": float(diagnosis_precision(after, diagnoses, k).mean())}
        if len(exact):
            figure["exact_recall@10"] = float(exact_recall(refine_round(engine, exact, exact_diagnoses, config, k), exact_ids, k).mean())
        figures[config] = figure
    keeping = [c for c in figures if figures[c].get("exact_recall@10", recall_before) >= recall_before - 1e-9] or list(figures)
    best = max(keeping, key=lambda c: (figures[c]["diagnosis_precision@10"], -list(figures).index(c)))
    return best, {label(c): figure for c, figure in figures.items()}


def label(config: FeedbackConfig) -> str:
    """A config as the report names it."""
    weights = config.marked_weights
    ranked_by = "the search's weights" if weights is None else \
        "weights " + ", ".join(f"{name} {getattr(weights, name):g}" for name in ("appearance", "latent", "shape"))
    return f"toward {config.toward:g}, away {config.away:g}, {ranked_by}"
