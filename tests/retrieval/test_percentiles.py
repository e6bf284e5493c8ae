"""Percentiles against a build's reference distribution, and the plain sentence made of them."""

from __future__ import annotations

import numpy as np
import pytest

from indexing.fused_index import ChannelWeights
from indexing.reference import ReferenceScores, pair_scores
from indexing.shape import ShapeConfig, archive_vectors, query_vectors
from retrieval.engine import ChannelScores
from retrieval.percentiles import Percentiles, Reference, plain_sentence


def _sketches(count: int, side: int = 16) -> np.ndarray:
    rng = np.random.default_rng(3)
    sketches = np.full((count, side, side), 255, np.uint8)
    for sketch in sketches:
        row, column = rng.integers(2, side - 6, size=2)
        sketch[row, column : column + 5] = 0
        sketch[row : row + 4, column] = 0
    return sketches


def test_pair_scores_are_every_channels_score_between_distinct_cases() -> None:
    shape = ShapeConfig(side=16)
    sketches = _sketches(4)
    rng = np.random.default_rng(1)
    channels = {"appearance": rng.normal(size=(4, 8)).astype(np.float32), "latent": rng.normal(size=(4, 5)).astype(np.float32),
                "shape": archive_vectors(sketches, shape)}
    queries = query_vectors(sketches, shape)
    reference = pair_scores(channels, queries, seed=0)
    assert reference.scores.shape == (12, 3)  # 4 * 3 ordered pairs, no case with itself
    expected = {(round(float(channels["appearance"][i] @ channels["appearance"][j]), 4),
                 round(float(queries[i] @ channels["shape"][j]), 4)) for i in range(4) for j in range(4) if i != j}
    assert {(round(float(a), 4), round(float(s), 4)) for a, _, s in reference.scores} == expected
    assert (reference.scores[:, 2] < 0).all()  # shape is minus a chamfer distance: distinct sketches are apart
    assert len(pair_scores(channels, queries, seed=0, max_pairs=5).scores) == 5
    assert pair_scores({name: value[:1] for name, value in channels.items()}, queries[:1], seed=0) is None
    assert np.array_equal(ReferenceScores.from_bytes(reference.to_bytes()).scores, reference.scores)


def test_a_percentile_is_the_share_of_reference_pairs_below_and_the_fused_one_follows_the_weights() -> None:
    scores = np.stack([np.arange(100.0), np.zeros(100), -np.arange(100.0)[::-1]], axis=1)
    reference = Reference(scores, {"appearance": 1.0, "latent": 1.0, "shape": 1.0})
    shape_only = ChannelWeights(appearance=0.0, latent=0.0, shape=1.0)
    placed = reference.place(-2.5, ChannelScores(appearance=97.5, latent=0.0, shape=-2.5), shape_only)
    assert placed.appearance == pytest.approx(98.0) and placed.shape == pytest.approx(97.0)  # 0..97 and -99..-3 below
    assert placed.latent == pytest.approx(50.0)  # every pair tied: counted half
    assert placed.fused == placed.shape  # shape alone weighs: the fused score is the shape score
    assert reference.place(1e9, ChannelScores(1e9, 1e9, 1e9), shape_only).fused == 100.0
    assert reference.place(-1e9, ChannelScores(-1e9, -1e9, -1e9), shape_only).fused == 0.0
    appearance_only = ChannelWeights(appearance=1.0, latent=0.0, shape=0.0)
    assert reference.place(97.5, ChannelScores(97.5, 0.0, -2.5), appearance_only).fused == pytest.approx(98.0)


def test_the_plain_sentence_leads_with_the_closest_channel_and_calls_the_middle_typical() -> None:
    assert plain_sentence(Percentiles(fused=95.0, appearance=55.0, latent=40.0, shape=97.0)) == (
        "closer in outline than 97 % of archive cases; colour and texture and overall look typical")
    assert plain_sentence(Percentiles(fused=99.0, appearance=99.24, latent=5.0, shape=93.4)) == (
        "closer in colour and texture (99.2 %) and outline (93 %) than archive cases; overall look unlike most archive cases")
    assert plain_sentence(Percentiles(fused=100.0, appearance=100.0, latent=96.0, shape=99.0)) == (
        "closer in colour and texture (99.9 %), outline (99.0 %) and overall look (96 %) than archive cases")
