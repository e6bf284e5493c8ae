"""Retrieval metrics over score matrices: exact-case recall and MRR, similar-case nDCG, diagnosis precision.

Scores are float [Q, N] (query x archive column, higher is closer); ties break by column, so a
ranking is deterministic. A column scored -inf is one a filter left out: it is never returned, so it
fills no top-k slot (an empty slot counts as a miss) and a true case scored -inf is never found. Similar-case relevance is the mean per-class DICE of the true masks
(`dice_relevance`), graded in [0, 1]; its normalised nDCG is (nDCG - random) / (1 - random) with
the random ranking's expected nDCG, so that 0 is chance and 1 the ideal ranking.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

K = 10
BOOTSTRAP_SAMPLES = 1000


def ranked_columns(scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """[Q, N] scores -> [Q, k] archive columns, best first (ties by column)."""
    if k is None or k >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # the k best, unordered (a tie at the k-th may pick either)
    order = np.lexsort((top, -np.take_along_axis(scores, top, axis=1)), axis=1)
    return np.take_along_axis(top, order, axis=1)


def true_ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each query's true column: [Q] int (ties ranked before the truth count)."""
    true_scores = scores[np.arange(len(scores)), truth]
    ahead = (scores > true_scores[:, None]).sum(1)
    tied_before = ((scores == true_scores[:, None]) & (np.arange(scores.shape[1])[None, :] < truth[:, None])).sum(1)
    return np.where(true_scores == -np.inf, scores.shape[1] + 1, ahead + tied_before + 1)


def recall_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per query: 1 if the true case is in the top k."""
    return (ranks <= k).astype(np.float64)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    return 1.0 / ranks


def dice_relevance(queries: np.ndarray, archive: np.ndarray) -> np.ndarray:
    """Class masks bool [Q, C, P] x [N, C, P] -> [Q, N]: mean DICE over the classes present in either."""
    total = np.zeros((len(queries), len(archive)))
    present = np.zeros_like(total)
    for c in range(queries.shape[1]):
        q, a = queries[:, c].astype(np.float32), archive[:, c].astype(np.float32)
        sizes = q.sum(1)[:, None] + a.sum(1)[None, :]
        has = sizes > 0
        total += np.where(has, 2.0 * (q @ a.T) / np.maximum(sizes, 1.0), 0.0)
        present += has
    return total / np.maximum(present, 1.0)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_at(scores: np.ndarray, relevance: np.ndarray, k: int = K) -> np.ndarray:
    """Per query nDCG@k of the ranking by `scores`, graded by `relevance` [Q, N]."""
    discounts = _discounts(k)
    gains = np.take_along_axis(relevance, ranked_columns(scores, k), axis=1)
    ideal = -np.sort(-relevance, axis=1)[:, :k]
    return (gains * discounts).sum(1) / np.maximum((ideal * discounts).sum(1), 1e-12)


def random_ndcg_at(relevance: np.ndarray, k: int = K) -> np.ndarray:
    """Per query, the expected nDCG@k of a uniformly random ranking (each slot's gain is the mean relevance)."""
    discounts = _discounts(k)
    ideal = -np.sort(-relevance, axis=1)[:, :k]
    return relevance.mean(1) * discounts.sum() / np.maximum((ideal * discounts).sum(1), 1e-12)


def normalised_ndcg(ndcg: np.ndarray, random: np.ndarray) -> np.ndarray:
    """(nDCG - random) / (1 - random) per query: 0 is chance, 1 the ideal ranking."""
    return (ndcg - random) / np.maximum(1.0 - random, 1e-12)


def precision_at(scores: np.ndarray, query_labels: np.ndarray, archive_labels: np.ndarray, k: int = K) -> np.ndarray:
    """Per query: the share of the top k whose label (e.g. diagnosis) equals the query's."""
    top = ranked_columns(scores, k)
    return ((archive_labels[top] == query_labels[:, None]) & returned(scores, top)).mean(1)


def inclusion_at(scores: np.ndarray, query_sets: list[frozenset], archive_sets: list[frozenset], k: int = K) -> np.ndarray:
    """Per query: the share of the top k whose label set (e.g. clinical signs) includes all of the query's."""
    top = ranked_columns(scores, k)
    holds = np.array([[query <= archive_sets[column] for column in row] for query, row in zip(query_sets, top)], dtype=bool)
    return (holds.reshape(top.shape) & returned(scores, top)).mean(1)


def returned(scores: np.ndarray, top: np.ndarray) -> np.ndarray:
    """bool [Q, k]: which of the `top` columns a ranking returns (not left out by a filter's -inf)."""
    return np.take_along_axis(scores, top, axis=1) > -np.inf


def bootstrap_interval(values: np.ndarray, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES,
                       statistic: Callable[[np.ndarray], float] = np.mean) -> tuple[float, float]:
    """The 95 % percentile bootstrap interval of `statistic` over per-query `values`."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(samples, len(values)))
    # the mean of every resample at once (the report's statistic); any other one resample by resample
    stats = values[draws].mean(axis=1) if statistic is np.mean else np.array([statistic(values[row]) for row in draws])
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def summary(values: np.ndarray, seed: int = 0) -> dict[str, float | list[float]]:
    """Mean and its bootstrap 95 % interval, rounded for a report."""
    low, high = bootstrap_interval(values, seed)
    return {"mean": round(float(np.mean(values)), 4), "ci95": [round(low, 4), round(high, 4)]}
