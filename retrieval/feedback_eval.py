"""Relevance feedback measured: a simulated user marks a search's hits and refines it.

The user of `s2m eval retrieval`'s protocol (issue 35): of a query's top k hits, those whose
diagnosis is the query case's are marked right, the rest not this; one round of
`retrieval.feedback.refine`, then diagnosis precision@k of the refined search against the first.
The feedback constants are chosen on validation queries (`choose_config` over `GRID`) and
reported on others. Query sketches come from the caller (phantom drawings in the tests and the
evaluation), so this module draws nothing itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.engine import DEFAULT_K, Query, SearchEngine, SearchResult
from retrieval.feedback import FeedbackConfig, refine

GRID = {"toward": (0.0, 1.0, 2.0, 4.0, 8.0), "away": (0.0, 0.25, 0.5, 1.0), "reweight": (0.0, 1.0, 2.0, 4.0, 8.0)}
BATCH = 32


@dataclass(frozen=True)
class FeedbackRun:
    """Per query: diagnosis precision@k of the first search and of the refined one."""

    before: np.ndarray  # float [Q]
    after: np.ndarray  # float [Q]

    @property
    def gain(self) -> float:
        return float(self.after.mean() - self.before.mean())


def first_searches(engine: SearchEngine, sketches: Sequence[np.ndarray], k: int = DEFAULT_K) -> list[SearchResult]:
    """Each sketch searched as the service would (networks once per batch)."""
    results: list[SearchResult] = []
    for start in range(0, len(sketches), BATCH):
        results += engine.search_many([Query(sketch, k) for sketch in sketches[start : start + BATCH]])
    return results


def precision(result: SearchResult, diagnosis: str, k: int) -> float:
    return sum(hit.case.diagnosis == diagnosis for hit in result.hits[:k]) / k


def refined_searches(engine: SearchEngine, firsts: Sequence[SearchResult], diagnoses: Sequence[str],
                     config: FeedbackConfig, k: int = DEFAULT_K) -> list[SearchResult]:
    """One round of simulated marks on each first search, searched again."""
    build = engine.build
    queries = []
    for first, diagnosis in zip(firsts, diagnoses):
        like = [hit.image_id for hit in first.hits[:k] if hit.case.diagnosis == diagnosis]
        unlike = [hit.image_id for hit in first.hits[:k] if hit.case.diagnosis != diagnosis]
        scores = {hit.image_id: hit.channels.__dict__ for hit in first.hits}
        step = refine(engine, build, first.vectors, build.weights, scores, like, unlike, config=config)
        queries.append(Query(None, k, first.filters, weights=step.weights, vectors=step.vectors, exclude=step.exclude))
    return [result for start in range(0, len(queries), BATCH) for result in engine.search_many(queries[start : start + BATCH])]


def feedback_run(engine: SearchEngine, firsts: Sequence[SearchResult], diagnoses: Sequence[str],
                 config: FeedbackConfig, k: int = DEFAULT_K) -> FeedbackRun:
    refined = refined_searches(engine, firsts, diagnoses, config, k)
    return FeedbackRun(np.array([precision(first, d, k) for first, d in zip(firsts, diagnoses)]),
                       np.array([precision(after, d, k) for after, d in zip(refined, diagnoses)]))


def choose_config(engine: SearchEngine, firsts: Sequence[SearchResult], diagnoses: Sequence[str], k: int = DEFAULT_K,
                  grid: dict[str, tuple[float, ...]] = GRID) -> tuple[FeedbackConfig, dict[FeedbackConfig, float]]:
    """The grid's constants with the best mean refined precision on these (validation) queries; the
    first of equals in grid order (smaller steps first). Also every config's mean."""
    means = {}
    for toward, away, reweight in itertools.product(grid["toward"], grid["away"], grid["reweight"]):
        config = FeedbackConfig(toward=toward, away=away, reweight=reweight)
        means[config] = float(feedback_run(engine, firsts, diagnoses, config, k).after.mean())
    best = max(means, key=lambda config: (means[config], -list(means).index(config)))
    return best, means
