"""Retrieval metrics on small hand-made score matrices whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval import metrics


def test_true_ranks_recall_and_mrr() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.4, 0.4, 0.1]])
    ranks = metrics.true_ranks(scores, np.array([0, 0, 1]))
    np.testing.assert_array_equal(ranks, [1, 3, 2])  # a tie with an earlier column ranks the truth after it
    np.testing.assert_array_equal(metrics.recall_at(ranks, 1), [1, 0, 0])
    np.testing.assert_allclose(metrics.reciprocal_rank(ranks), [1, 1 / 3, 1 / 2])


def test_ndcg_is_one_for_the_ideal_ranking_and_random_is_its_expectation() -> None:
    rng = np.random.default_rng(0)
    relevance = rng.uniform(size=(4, 30))
    assert metrics.ndcg_at(relevance, relevance, k=10) == pytest.approx(np.ones(4))
    assert (metrics.ndcg_at(-relevance, relevance, k=10) < 0.7).all()
    shuffled = np.mean([metrics.ndcg_at(rng.uniform(size=relevance.shape), relevance) for _ in range(2000)], axis=0)
    np.testing.assert_allclose(shuffled, metrics.random_ndcg_at(relevance), atol=0.01)
    normalised = metrics.normalised_ndcg(metrics.ndcg_at(relevance, relevance), metrics.random_ndcg_at(relevance))
    np.testing.assert_allclose(normalised, 1.0)


def test_dice_relevance_of_identical_and_disjoint_masks() -> None:
    a = np.zeros((1, 2, 16), bool)
    a[0, 0, :8] = True
    b = np.zeros((2, 2, 16), bool)
    b[0, 0, :8] = True  # the same class-0 region
    b[1, 0, 8:] = True  # disjoint
    b[1, 1, :4] = True  # and a class the query lacks: counted (present in either), DICE 0
    np.testing.assert_allclose(metrics.dice_relevance(a, b), [[1.0, 0.0]])


def test_precision_by_label_and_bootstrap_interval() -> None:
    scores = np.array([[3.0, 2.0, 1.0, 0.0]])
    labels = np.array(["a", "b", "a", "a"], dtype=object)
    assert metrics.precision_at(scores, np.array(["a"], dtype=object), labels, k=2)[0] == 0.5
    values = np.r_[np.ones(50), np.zeros(50)]
    low, high = metrics.bootstrap_interval(values)
    assert low < 0.5 < high and high - low < 0.25
    assert metrics.bootstrap_interval(np.ones(10)) == (1.0, 1.0)


def test_a_ranking_with_known_recall_and_ndcg() -> None:
    scores = np.array([[0.9, 0.1, 0.5]])  # ranks columns 0, 2, 1
    relevance = np.array([[0.5, 1.0, 0.0]])
    # DCG = 0.5 / log2 2 + 0 / log2 3 + 1 / log2 4; ideal = 1 / log2 2 + 0.5 / log2 3 + 0
    expected = (0.5 + 0.5) / (1 + 0.5 / np.log2(3))
    assert metrics.ndcg_at(scores, relevance, k=3)[0] == pytest.approx(expected)
    ranks = metrics.true_ranks(scores, np.array([1]))  # the exact case is column 1, ranked last
    assert ranks[0] == 3 and metrics.recall_at(ranks, 2)[0] == 0 and metrics.recall_at(ranks, 3)[0] == 1
    assert metrics.reciprocal_rank(ranks)[0] == pytest.approx(1 / 3)
