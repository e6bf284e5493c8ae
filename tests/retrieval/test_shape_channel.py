"""The shape channel is chamfer matching, exactly; asymmetric PCA keeps every channel's ranking."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from indexing.shape import ShapeConfig, archive_vectors, query_vector, query_vectors
from indexing.transforms import ChannelTransform

SIDE = 32
CONFIG = ShapeConfig(side=SIDE, truncation=6.0)


def _strokes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random polylines as Sketch uint8 [count, SIDE, SIDE]."""
    import cv2

    out = np.full((count, SIDE, SIDE), 255, np.uint8)
    for sketch in out:
        for _ in range(rng.integers(1, 4)):
            points = rng.integers(0, SIDE, size=(rng.integers(2, 6), 2)).astype(np.int32)
            cv2.polylines(sketch, [points], False, 0, 1)
    return out


def direct_chamfer(query: np.ndarray, archive: np.ndarray, truncation: float) -> float:
    """Symmetric truncated chamfer between the ink pixels of two sketches, from point sets (no distance transform)."""
    q, a = np.argwhere(query < 128), np.argwhere(archive < 128)
    if len(a) == 0:
        return truncation  # nothing to match: every query pixel is at the cap
    to_archive = np.minimum(cKDTree(a).query(q)[0], truncation).mean()
    to_query = np.minimum(cKDTree(q).query(a)[0], truncation).mean()
    return float(to_archive + to_query)


def test_inner_product_equals_a_direct_chamfer_computation() -> None:
    rng = np.random.default_rng(0)
    queries, archive = _strokes(rng, 12), _strokes(rng, 40)
    scores = query_vectors(queries, CONFIG) @ archive_vectors(archive, CONFIG).T  # [12, 40]
    direct = np.array([[direct_chamfer(q, a, CONFIG.truncation) for a in archive] for q in queries])
    np.testing.assert_allclose(-scores, direct, atol=1e-4)
    assert direct.std() > 0.5  # the comparison is between varied shapes, not a constant


def test_identical_strokes_score_zero_and_a_blank_archive_sketch_scores_worst() -> None:
    rng = np.random.default_rng(1)
    sketch = _strokes(rng, 1)
    blank = np.full((1, SIDE, SIDE), 255, np.uint8)
    vectors = archive_vectors(np.concatenate([sketch, blank]), CONFIG)
    own, empty = query_vector(sketch[0], CONFIG) @ vectors.T
    assert own == pytest.approx(0.0, abs=1e-6)
    assert empty == pytest.approx(-CONFIG.truncation)


def test_asymmetric_pca_keeps_the_shape_ranking_where_centring_both_sides_ruins_it() -> None:
    rng = np.random.default_rng(2)
    queries, archive = _strokes(rng, 20), _strokes(rng, 60)
    q, a = query_vectors(queries, CONFIG), archive_vectors(archive, CONFIG)
    exact = q @ a.T
    transform = ChannelTransform.fit(a, dims=59)  # 60 centred vectors span 59 directions: lossless
    projected = transform.query(q) @ transform.archive(a).T
    np.testing.assert_allclose(projected + transform.query_offset(q)[:, None], exact, atol=1e-3)
    assert (np.argsort(-projected, axis=1)[:, :5] == np.argsort(-exact, axis=1)[:, :5]).mean() > 0.95
    centred_both = (q - transform.mean) @ transform.components @ transform.archive(a).T  # what faiss PCAMatrix does
    top1 = np.argmax(exact, axis=1)
    assert (np.argmax(centred_both, axis=1) == top1).mean() < (np.argmax(projected, axis=1) == top1).mean()


def test_compressed_transform_stays_close_and_round_trips_through_arrays() -> None:
    rng = np.random.default_rng(3)
    archive = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 64))  # rank-16 data in 64 dims
    transform = ChannelTransform.fit(archive.astype(np.float32), dims=16)
    restored = ChannelTransform.from_arrays(transform.arrays("appearance"), "appearance")
    queries = rng.normal(size=(5, 64)).astype(np.float32)
    np.testing.assert_allclose(restored.query(queries) @ restored.archive(archive).T + restored.query_offset(queries)[:, None],
                               queries @ archive.T, rtol=1e-3, atol=1e-2)
    assert restored.output_dim == 16 and ChannelTransform.fit(archive, dims=None).components is None
