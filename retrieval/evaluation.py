"""Retrieval evaluation over an indexed archive: every channel, contour chamfer, and the fused ranking.

The caller (the `s2m eval retrieval` command, which draws phantom sketches) hands in query groups:
per drawer style, split ("val" chooses the fusion weights, "test" is reported, an unseen style
is test only), sketches of archive images (exact case: where does the drawn image rank?) and
sketches of held-out cases (similar case: nDCG@10 graded by DICE, diagnosis precision@10).
Query-side vectors come from the engine's own stages, archive-side from the active build's
stored vectors, so the figures are the product's. Rows: the chamfer baseline (untruncated
contour chamfer of the canonical sketches), each channel alone, and the fused score
sum_c w_c * kappa_c * s_c (the engine's calibrated fusion) with appearance from x_0 (no H) and
from x_T (with H), and, given a pix2pix generator, "pix2pix + C": pix2pix's image described by C
and searched in the appearance channel (the retrieval the paper's strongest baseline gives). The
weights are chosen on validation queries only. Every row carries its query latency: the wall time
of the query-side stages it needs plus its brute-force scoring against the archive, per query.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

from generation.data import sketches_to_tensor
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
PIX2PIX_C = "pix2pix_c"
ROWS = (CHAMFER, APPEARANCE_X0, APPEARANCE, LATENT, SHAPE, FUSED_X0, FUSED_XT, PIX2PIX_C)
# The query-side stages each row needs (timed in `row_scores`); each row also scores the archive.
ROW_STAGES = {
    CHAMFER: ("canonicalise", "chamfer_vectors"),
    APPEARANCE_X0: ("canonicalise", "x0", "describe_x0"),
    APPEARANCE: ("canonicalise", "xT", "describe_xT"),
    LATENT: ("canonicalise", "x0", "latent_vectors"),
    SHAPE: ("canonicalise", "shape_vectors"),
    FUSED_X0: ("canonicalise", "x0", "describe_x0", "latent_vectors", "shape_vectors"),
    FUSED_XT: ("canonicalise", "xT", "describe_xT", "latent_vectors", "shape_vectors"),
    PIX2PIX_C: ("canonicalise", "pix2pix", "describe_pix2pix"),
}
ROW_CHANNELS = {FUSED_X0: (APPEARANCE_X0, LATENT, SHAPE), FUSED_XT: (APPEARANCE, LATENT, SHAPE)}


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
    # per query, for the breakdowns: abstraction level label and canvas side (exact [Qe], similar [Qs])
    exact_levels: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    exact_canvases: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))
    similar_levels: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    similar_canvases: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))
    in_breakdowns: bool = True  # False for re-draws of another group's drawings (the canvas sweeps)
    # the drawn cases' names (the sign rows read each query's own signs by them): exact [Qe], similar [Qs]
    exact_cases: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    similar_cases: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    @functools.cached_property
    def random_ndcg(self) -> np.ndarray:
        """Per similar-case query, the expected nDCG@10 of a random ranking."""
        return metrics.random_ndcg_at(self.relevance)

    def subset(self, exact: np.ndarray, similar: np.ndarray) -> "QueryGroup":
        """The queries selected by two boolean masks ([Qe], [Qs])."""
        pick = lambda items, mask: [item for item, keep in zip(items, mask) if keep]  # noqa: E731
        return dataclasses.replace(
            self, exact_sketches=pick(self.exact_sketches, exact), exact_columns=self.exact_columns[exact],
            similar_sketches=pick(self.similar_sketches, similar), relevance=self.relevance[similar],
            diagnoses=self.diagnoses[similar], exact_levels=self.exact_levels[exact],
            exact_canvases=self.exact_canvases[exact], similar_levels=self.similar_levels[similar],
            similar_canvases=self.similar_canvases[similar],
            exact_cases=self.exact_cases[exact] if len(self.exact_cases) else self.exact_cases,
            similar_cases=self.similar_cases[similar] if len(self.similar_cases) else self.similar_cases)


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


class StageTimer:
    """Wall seconds per named stage, summed over batches, and the number of queries timed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.queries = 0

    def run(self, stage: str, work, *args):
        started = time.perf_counter()
        result = work(*args)
        self.seconds[stage] += time.perf_counter() - started
        return result

    def latency_ms(self, rows) -> dict[str, float]:
        """Per row: ms per query of its stages and its archive scoring (fused rows score three channels)."""
        out = {}
        for row in rows:
            scoring = sum(self.seconds[f"score_{c}"] for c in ROW_CHANNELS.get(row, (row,)))
            total = sum(self.seconds[stage] for stage in ROW_STAGES[row]) + scoring
            out[row] = round(1000.0 * total / max(self.queries, 1), 3)
        return out


@torch.no_grad()
def row_scores(engine: SearchEngine, side: ArchiveSide, sketches: list[np.ndarray], pix2pix: torch.nn.Module | None = None,
               timer: StageTimer | None = None) -> dict[str, np.ndarray]:
    """Every single-channel row's scores [Q, N] for `sketches`, through the engine's query stages
    (and pix2pix + C when a pix2pix generator at the engine's resolution is given)."""
    build = engine.build
    timer = timer if timer is not None else StageTimer()
    untruncated = ShapeConfig(side=build.shape.side, truncation=CHAMFER_UNTRUNCATED)
    names = (CHAMFER, APPEARANCE_X0, APPEARANCE, LATENT, SHAPE, *((PIX2PIX_C,) if pix2pix is not None else ()))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    describe = engine.embedder.describe
    for start in range(0, len(sketches), BATCH):
        canonical = timer.run("canonicalise", engine.canonicalise, sketches[start : start + BATCH])
        batch = sketches_to_tensor(canonical)
        timer.run("x0", engine.pipeline.run, batch, 0)  # timed alone: the rows without H stop here
        output = timer.run("xT", engine.pipeline.run, batch, engine.config.steps)
        parts[APPEARANCE_X0].append(timer.run("describe_x0", describe, output.x_0).numpy())
        parts[APPEARANCE].append(timer.run("describe_xT", describe, output.image).numpy())
        parts[LATENT].append(timer.run("latent_vectors", latent_vectors, output.w, engine.pipeline.encoder.w_avg))
        parts[SHAPE].append(timer.run("shape_vectors", query_vectors, canonical, build.shape))
        parts[CHAMFER].append(timer.run("chamfer_vectors", query_vectors, canonical, untruncated))
        if pix2pix is not None:
            image = timer.run("pix2pix", pix2pix, batch.to(next(pix2pix.parameters()).device))
            parts[PIX2PIX_C].append(timer.run("describe_pix2pix", describe, image).numpy())
        timer.queries += len(canonical)
    archive = {APPEARANCE_X0: side.vectors.channels[APPEARANCE], APPEARANCE: side.vectors.channels[APPEARANCE],
               LATENT: side.vectors.channels[LATENT], SHAPE: side.vectors.channels[SHAPE], CHAMFER: side.chamfer,
               PIX2PIX_C: side.vectors.channels[APPEARANCE]}
    return {name: timer.run(f"score_{name}", np.matmul, np.concatenate(value), archive[name].T)
            for name, value in parts.items()}


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

    def subset(self, exact: np.ndarray, similar: np.ndarray) -> "ScoredGroup":
        return ScoredGroup(self.group.subset(exact, similar), {k: v[exact] for k, v in self.exact.items()},
                           {k: v[similar] for k, v in self.similar.items()})


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


def score_groups(engine: SearchEngine, side: ArchiveSide, groups: list[QueryGroup], pix2pix: torch.nn.Module | None = None,
                 timer: StageTimer | None = None) -> list[ScoredGroup]:
    def scores(sketches: list[np.ndarray]) -> dict[str, np.ndarray]:
        return row_scores(engine, side, sketches, pix2pix, timer) if sketches else {}

    return [ScoredGroup(g, scores(g.exact_sketches), scores(g.similar_sketches)) for g in groups]


def with_fusion(scored: list[ScoredGroup], weights: ChannelWeights, scales: dict[str, float]) -> list[ScoredGroup]:
    return [ScoredGroup(s.group, {**s.exact, **(fuse_rows(s.exact, weights, scales) if s.exact else {})},
                        {**s.similar, **(fuse_rows(s.similar, weights, scales) if s.similar else {})}) for s in scored]


def report_rows(scored: list[ScoredGroup], side: ArchiveSide, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Row -> metric -> {mean, ci95} over the given groups' queries."""
    out: dict[str, dict[str, Any]] = {}
    present = {row for item in scored for row in (*item.exact, *item.similar)}
    for row in (r for r in ROWS if r in present):
        values: dict[str, list[np.ndarray]] = {}
        for item in scored:
            for name, value in per_query(item, side, row).items():
                values.setdefault(name, []).append(value)
        out[row] = {name: metrics.summary(np.concatenate(v), seed) for name, v in values.items()}
    return out


def breakdown(scored: list[ScoredGroup], side: ArchiveSide, field_name: str, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Rows over the given groups' queries split by a per-query field ("levels" or "canvases")."""
    values = sorted({str(v) for s in scored for v in (*getattr(s.group, f"exact_{field_name}"),
                                                         *getattr(s.group, f"similar_{field_name}"))})
    out = {}
    for value in values:
        parts = [s.subset(getattr(s.group, f"exact_{field_name}").astype(str) == value,
                          getattr(s.group, f"similar_{field_name}").astype(str) == value) for s in scored]
        out[value] = report_rows(parts, side, seed)
    return out


def evaluate(engine: SearchEngine, groups: list[QueryGroup], seed: int = 0, pix2pix: torch.nn.Module | None = None,
             unseen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Choose the fused weights on the "val" groups, report every style's "test" groups, and the test
    queries by abstraction level (seen and `unseen` styles apart) and by canvas side; see the module docstring."""
    side = archive_side(engine)
    scales = engine.build.scales
    if pix2pix is not None and pix2pix.config.resolution != engine.pipeline.resolution:
        raise ValueError(f"the pix2pix generator works at {pix2pix.config.resolution} px, the bundle at "
                         f"{engine.pipeline.resolution} px; train pix2pix at the bundle's resolution")
    timer = StageTimer()
    scored = score_groups(engine, side, groups, pix2pix, timer)
    validation = [s for s in scored if s.group.split == VAL]
    if not validation:
        raise ValueError("no validation queries: the fusion weights are chosen on validation queries only")
    weights, objective = choose_weights(validation, side, scales)
    scored = with_fusion(scored, weights, scales)
    validation = [s for s in scored if s.group.split == VAL]
    styles = sorted({s.group.style for s in scored if s.group.split == TEST})
    per_style = {style: report_rows([s for s in scored if s.group.style == style and s.group.split == TEST], side, seed)
                 for style in styles}
    tested = [s for s in scored if s.group.split == TEST and s.group.in_breakdowns]
    by_level = {name: breakdown([s for s in tested if (s.group.style in unseen) == (name == "unseen")], side, "levels", seed)
                for name in ("seen", "unseen")}
    present = [row for row in ROWS if row in per_style[styles[0]]] if styles else []
    return {
        "latency_ms_per_query": timer.latency_ms(present),
        "latency_note": "query-side stages plus brute-force scoring of the whole archive, this process, per query",
        "by_level": by_level,
        "by_canvas": breakdown(tested, side, "canvases", seed),
        "weights": {name: weights.of(name) for name in CHANNELS},
        "validation_objective": round(objective, 4),
        "scales": scales,
        "archive_images": len(side.case_refs),
        "validation": report_rows(validation, side, seed),
        "validation_styles": {style: report_rows([s for s in validation if s.group.style == style], side, seed)
                              for style in sorted({s.group.style for s in validation})},
        "test_styles": per_style,
        "queries": {f"{g.style}/{g.split}": {"exact": len(g.exact_sketches), "similar": len(g.similar_sketches),
                                             "canvases": list(g.canvases)} for g in groups},
    }
