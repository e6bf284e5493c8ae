"""Retrieval evaluation over an indexed archive: every channel, contour chamfer, and the fused ranking.

The caller (the `s2m eval retrieval` command, which draws phantom sketches) hands in query groups:
per drawer style, split ("val" chooses the fusion weights, "test" is reported, an unseen style
is test only), sketches of archive images (exact case: where does the drawn image rank?) and
sketches of held-out cases (similar case: nDCG@10 graded by DICE, diagnosis precision@10).
Query-side vectors come from the engine's own stages, archive-side from the active build's
stored vectors, so the figures are the product's. Rows: the chamfer baseline (untruncated
contour chamfer of the canonical sketches), each channel alone, and the fused score
sum_c w_c * kappa_c * s_c (the engine's calibrated fusion) with appearance from x_0 (no H) and
from x_T (with H). The weights are chosen on validation queries only.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

from indexing.fused_index import ArchiveVectors, ChannelWeights, load_archive_vectors
from indexing.models import Image
from indexing.shape import ShapeConfig, archive_vectors, query_vectors
from indexing.vectors import APPEARANCE, CHANNELS, LATENT, SHAPE, latent_vectors
from retrieval.engine import SearchEngine
from retrieval import metrics

WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
CHAMFER_UNTRUNCATED = 1e6  # px: the plain chamfer baseline caps no distance
BATCH = 64
VAL, TEST = "val", "test"
CHAMFER, APPEARANCE_X0, FUSED_X0, FUSED_XT = "chamfer", "appearance_x0", "fused_x0", "fused_xT"
ROWS = (CHAMFER, APPEARANCE_X0, APPEARANCE, LATENT, SHAPE, FUSED_X0, FUSED_XT)


@dataclass(frozen=True)
class ArchiveSide:
    """The active build's stored vectors with each column's case and diagnosis."""

    vectors: ArchiveVectors
    case_refs: list[str]
    diagnoses: np.ndarray  # object [N]
    chamfer: np.ndarray  # float32 [N, D]: untruncated contour-chamfer archive vectors

    @property
    def column_of(self) -> dict[str, int]:
        return {ref: column for column, ref in enumerate(self.case_refs)}


@dataclass(frozen=True)
class QueryGroup:
    """Queries of one drawer style, one split: exact-case and similar-case sketches with their truth."""

    style: str
    split: str
    exact_sketches: list[np.ndarray]
    exact_columns: np.ndarray  # int [Qe]: archive column of the drawn image
    similar_sketches: list[np.ndarray]
    relevance: np.ndarray  # float [Qs, N]: DICE relevance of each archive column
    diagnoses: np.ndarray  # object [Qs]
    canvases: tuple[int, ...] = field(default=())  # canvas sides the sketches were drawn on (for the report)

    @functools.cached_property
    def random_ndcg(self) -> np.ndarray:
        """Per similar-case query, the expected nDCG@10 of a random ranking."""
        return metrics.random_ndcg_at(self.relevance)


def archive_side(engine: SearchEngine) -> ArchiveSide:
    build = engine.build
    with engine.archive.sessions() as session:
        vectors = load_archive_vectors(session, build.version, build.shape)
        rows = dict(session.execute(select(Image.id, Image.case_ref)).all())
        diagnosis = dict(session.execute(select(Image.id, Image.diagnosis)).all())
    untruncated = ShapeConfig(side=build.shape.side, truncation=CHAMFER_UNTRUNCATED)
    return ArchiveSide(vectors, [rows[int(i)] for i in vectors.ids],
                       np.array([diagnosis[int(i)] for i in vectors.ids], dtype=object),
                       archive_vectors(vectors.sketches, untruncated))


@torch.no_grad()
def row_scores(engine: SearchEngine, side: ArchiveSide, sketches: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every single-channel row's scores [Q, N] for `sketches`, through the engine's query stages."""
    build = engine.build
    untruncated = ShapeConfig(side=build.shape.side, truncation=CHAMFER_UNTRUNCATED)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (CHAMFER, APPEARANCE_X0, APPEARANCE, LATENT, SHAPE)}
    for start in range(0, len(sketches), BATCH):
        canonical = engine.canonicalise(sketches[start : start + BATCH])
        batch = torch.from_numpy(canonical).float().div(127.5).sub(1.0).unsqueeze(1)
        output = engine.pipeline.run(batch, engine.config.steps)
        parts[APPEARANCE_X0].append(engine.embedder.describe(output.x_0).numpy())
        parts[APPEARANCE].append(engine.embedder.describe(output.image).numpy())
        parts[LATENT].append(latent_vectors(output.w, engine.pipeline.encoder.w_avg))
        parts[SHAPE].append(query_vectors(canonical, build.shape))
        parts[CHAMFER].append(query_vectors(canonical, untruncated))
    archive = {APPEARANCE_X0: side.vectors.channels[APPEARANCE], APPEARANCE: side.vectors.channels[APPEARANCE],
               LATENT: side.vectors.channels[LATENT], SHAPE: side.vectors.channels[SHAPE], CHAMFER: side.chamfer}
    return {name: np.concatenate(value) @ archive[name].T for name, value in parts.items()}


def fuse_rows(scores: dict[str, np.ndarray], weights: ChannelWeights, scales: dict[str, float]) -> dict[str, np.ndarray]:
    """The fused rows without H (appearance of x_0) and with H (appearance of x_T)."""
    def fused(appearance: str) -> np.ndarray:
        return (weights.appearance * scales[APPEARANCE] * scores[appearance]
                + weights.latent * scales[LATENT] * scores[LATENT] + weights.shape * scales[SHAPE] * scores[SHAPE])
    return {FUSED_X0: fused(APPEARANCE_X0), FUSED_XT: fused(APPEARANCE)}


@dataclass
class ScoredGroup:
    group: QueryGroup
    exact: dict[str, np.ndarray]
    similar: dict[str, np.ndarray]


def per_query(scored: ScoredGroup, side: ArchiveSide, row: str) -> dict[str, np.ndarray]:
    """Per-query values of every metric for one row of one group."""
    group, out = scored.group, {}
    if len(group.exact_sketches):
        ranks = metrics.true_ranks(scored.exact[row], group.exact_columns)
        out.update({"exact_recall@1": metrics.recall_at(ranks, 1), "exact_recall@10": metrics.recall_at(ranks, 10),
                    "exact_mrr": metrics.reciprocal_rank(ranks)})
    if len(group.similar_sketches):
        ndcg = metrics.ndcg_at(scored.similar[row], group.relevance)
        out.update({"similar_ndcg@10": ndcg,
                    "similar_ndcg@10_normalised": metrics.normalised_ndcg(ndcg, group.random_ndcg),
                    "diagnosis_precision@10": metrics.precision_at(scored.similar[row], group.diagnoses, side.diagnoses)})
    return out


def choose_weights(scored: list[ScoredGroup], side: ArchiveSide, scales: dict[str, float],
                   grid: tuple[float, ...] = WEIGHT_GRID) -> tuple[ChannelWeights, float]:
    """The grid weights maximising exact recall@10 + normalised nDCG@10 of the fused x_T row on `scored`."""
    best, best_value = ChannelWeights(), -np.inf
    for values in itertools.product(grid, repeat=len(CHANNELS)):
        if not any(values):
            continue
        weights = ChannelWeights(**dict(zip(CHANNELS, values)))
        totals: dict[str, list[np.ndarray]] = {"exact_recall@10": [], "similar_ndcg@10_normalised": []}
        for item in scored:
            fused = ScoredGroup(item.group, fuse_rows(item.exact, weights, scales), fuse_rows(item.similar, weights, scales))
            values_of = per_query(fused, side, FUSED_XT)
            for name in totals:
                if name in values_of:
                    totals[name].append(values_of[name])
        value = sum(float(np.mean(np.concatenate(v))) for v in totals.values() if v)
        if value > best_value + 1e-9:
            best, best_value = weights, value
    return best, best_value


def score_groups(engine: SearchEngine, side: ArchiveSide, groups: list[QueryGroup]) -> list[ScoredGroup]:
    return [ScoredGroup(g, row_scores(engine, side, g.exact_sketches) if g.exact_sketches else {},
                        row_scores(engine, side, g.similar_sketches) if g.similar_sketches else {}) for g in groups]


def with_fusion(scored: list[ScoredGroup], weights: ChannelWeights, scales: dict[str, float]) -> list[ScoredGroup]:
    return [ScoredGroup(s.group, {**s.exact, **(fuse_rows(s.exact, weights, scales) if s.exact else {})},
                        {**s.similar, **(fuse_rows(s.similar, weights, scales) if s.similar else {})}) for s in scored]


def report_rows(scored: list[ScoredGroup], side: ArchiveSide, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Row -> metric -> {mean, ci95} over the given groups' queries."""
    out: dict[str, dict[str, Any]] = {}
    for row in ROWS:
        values: dict[str, list[np.ndarray]] = {}
        for item in scored:
            for name, value in per_query(item, side, row).items():
                values.setdefault(name, []).append(value)
        out[row] = {name: metrics.summary(np.concatenate(v), seed) for name, v in values.items()}
    return out


def evaluate(engine: SearchEngine, groups: list[QueryGroup], seed: int = 0) -> dict[str, Any]:
    """Choose the fused weights on the "val" groups, report every style's "test" groups; see the module docstring."""
    side = archive_side(engine)
    scales = engine.build.scales
    scored = score_groups(engine, side, groups)
    validation = [s for s in scored if s.group.split == VAL]
    if not validation:
        raise ValueError("no validation queries: the fusion weights are chosen on validation queries only")
    weights, objective = choose_weights(validation, side, scales)
    scored = with_fusion(scored, weights, scales)
    validation = [s for s in scored if s.group.split == VAL]
    styles = sorted({s.group.style for s in scored if s.group.split == TEST})
    per_style = {style: report_rows([s for s in scored if s.group.style == style and s.group.split == TEST], side, seed)
                 for style in styles}
    return {
        "weights": {name: weights.of(name) for name in CHANNELS},
        "validation_objective": round(objective, 4),
        "scales": scales,
        "archive_images": len(side.case_refs),
        "validation": report_rows(validation, side, seed),
        "test_styles": per_style,
        "queries": {f"{g.style}/{g.split}": {"exact": len(g.exact_sketches), "similar": len(g.similar_sketches),
                                             "canvases": list(g.canvases)} for g in groups},
    }
