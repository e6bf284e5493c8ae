"""Sketch + true signs: the rows of the retrieval evaluation that add each query's own clinical signs (issue 38).

A query's signs are the ones its drawn case carries (what a clinician who saw the throat would
add); the archive side is unchanged and never read for labels. Rows, beside the fused sketch-only
row of `retrieval.evaluation`: the signs applied in the appearance space only, in W only (G and H
draw the edited w; its appearance and latent vectors are what is scored), and both. For each route
the per-sign strength factors (multiples of the stored steps) and the appearance channel's weight
are chosen on the validation queries by diagnosis precision@10; test queries only report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from generation.data import sketches_to_tensor
from generation.signs import SignDirections
from indexing.fused_index import ChannelWeights
from indexing.shape import query_vectors
from indexing.vectors import APPEARANCE, LATENT, SHAPE, latent_vectors
from retrieval import metrics
from retrieval.engine import SearchEngine
from retrieval.evaluation import BATCH, ArchiveSide

FACTOR_GRID = (0.5, 1.0, 2.0, 4.0)
APPEARANCE_WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
ROUTE_ROWS = {"fused_signs_appearance": ("appearance",), "fused_signs_w": ("w",), "fused_signs_both": ("w", "appearance")}


@dataclass(frozen=True)
class SignQueries:
    """Sketches with their true signs and truth: diagnoses (similar-case) or archive columns (exact-case)."""

    sketches: list[np.ndarray]
    signs: list[dict[str, float]]  # per query: {sign: 1.0} for each sign its case carries
    diagnoses: np.ndarray | None = None  # object [Q]
    columns: np.ndarray | None = None  # int [Q]


class QueryVectors:
    """The query-side channel vectors of a set of queries, with W edits of given factors run (and kept) on demand."""

    def __init__(self, engine: SearchEngine, directions: SignDirections, queries: SignQueries) -> None:
        self.engine, self.directions, self.queries = engine, directions, queries
        self.canonical = engine.canonicalise(queries.sketches)
        self.shape = query_vectors(self.canonical, engine.build.shape)
        self._runs: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def appearance_latent(self, w_factors: dict[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
        """[Q, D] appearance of x_T and [Q, w_dim] latent vectors, with the W edits at `w_factors` (None: none)."""
        key = tuple(sorted((w_factors or {}).items()))
        if key not in self._runs:
            appearance, latent = [], []
            for start in range(0, len(self.canonical), BATCH):
                batch = sketches_to_tensor(self.canonical[start:start + BATCH])
                offsets = None
                if w_factors is not None:
                    rows = self.queries.signs[start:start + BATCH]
                    offsets = torch.stack([self.directions.w_offset(scaled(one, w_factors), ("w",)) for one in rows])
                with torch.no_grad():
                    output = self.engine.pipeline.run(batch, self.engine.config.steps, offsets)
                appearance.append(self.engine.embedder.describe(output.image).numpy())
                latent.append(latent_vectors(output.w, self.engine.pipeline.encoder.w_avg))
            self._runs[key] = (np.concatenate(appearance), np.concatenate(latent))
        return self._runs[key]

    def scores(self, side: ArchiveSide, weights: ChannelWeights, scales: dict[str, float],
               w_factors: dict[str, float] | None, appearance_factors: dict[str, float] | None) -> np.ndarray:
        """Fused scores [Q, N] against the archive with the given edits (None: that route off)."""
        appearance, latent = self.appearance_latent(w_factors)
        if appearance_factors is not None:
            appearance = np.stack([self.directions.edit_appearance(vector, scaled(one, appearance_factors), ("appearance",))
                                   for vector, one in zip(appearance, self.queries.signs)])
        channels = side.vectors.channels
        return (weights.appearance * scales[APPEARANCE] * (appearance @ channels[APPEARANCE].T)
                + weights.latent * scales[LATENT] * (latent @ channels[LATENT].T)
                + weights.shape * scales[SHAPE] * (self.shape @ channels[SHAPE].T))


def scaled(strengths: dict[str, float], factors: dict[str, float]) -> dict[str, float]:
    return {sign: strength * factors.get(sign, 1.0) for sign, strength in strengths.items()}


def diagnosis_precision(scores: np.ndarray, queries: SignQueries, side: ArchiveSide) -> np.ndarray:
    return metrics.precision_at(scores, queries.diagnoses, side.diagnoses)


def choose_route(validation: QueryVectors, side: ArchiveSide, weights: ChannelWeights, scales: dict[str, float],
                 routes: tuple[str, ...]) -> dict[str, Any]:
    """Per-sign factors (one coordinate-ascent pass over FACTOR_GRID) and the appearance weight for one route,
    by mean diagnosis precision@10 on the validation queries."""
    names = validation.directions.names
    factors = {sign: 1.0 for sign in names}
    chosen = {"appearance_weight": max(weights.appearance, 1.0), "factors": factors}

    def objective(factors: dict[str, float], appearance_weight: float) -> float:
        scores = validation.scores(side, ChannelWeights(appearance_weight, weights.latent, weights.shape), scales, factors if "w" in routes else None,
                                   factors if "appearance" in routes else None)
        return float(diagnosis_precision(scores, validation.queries, side).mean())

    def best_weight(factors: dict[str, float]) -> tuple[float, float]:
        usable = [value for value in APPEARANCE_WEIGHT_GRID if value or weights.latent or weights.shape]
        return max((objective(factors, value), value) for value in usable)

    value, chosen["appearance_weight"] = best_weight(factors)
    for sign in names:
        for factor in FACTOR_GRID:
            trial = {**factors, sign: factor}
            trial_value = objective(trial, chosen["appearance_weight"])
            if trial_value > value + 1e-9:
                value, factors = trial_value, trial
    value, chosen["appearance_weight"] = best_weight(factors)
    chosen.update(factors=factors, validation_diagnosis_precision=round(value, 4))
    return chosen


def evaluate_signs(engine: SearchEngine, side: ArchiveSide, weights: ChannelWeights, validation: SignQueries,
                   test: SignQueries, exact_test: SignQueries | None = None, seed: int = 0) -> dict[str, Any]:
    """The sign rows: choices made on `validation`, diagnosis precision@10 (and exact recall@10) on the tests."""
    directions = engine.models.signs
    if directions is None:
        raise ValueError("the bundle has no sign directions: run `s2m train signs` first")
    scales = engine.build.scales
    val_vectors, test_vectors = QueryVectors(engine, directions, validation), QueryVectors(engine, directions, test)
    exact_vectors = QueryVectors(engine, directions, exact_test) if exact_test is not None else None
    rows: dict[str, Any] = {}

    def report(name: str, row_weights: ChannelWeights, w: dict | None, appearance: dict | None) -> None:
        precision = diagnosis_precision(test_vectors.scores(side, row_weights, scales, w, appearance), test, side)
        rows[name] = {"diagnosis_precision@10": metrics.summary(precision, seed),
                      "per_diagnosis": {str(d): round(float(precision[test.diagnoses == d].mean()), 4)
                                        for d in sorted(set(test.diagnoses))}}
        if exact_vectors is not None:
            ranks = metrics.true_ranks(exact_vectors.scores(side, row_weights, scales, w, appearance), exact_test.columns)
            rows[name]["exact_recall@10"] = metrics.summary(metrics.recall_at(ranks, 10), seed)

    report("fused", weights, None, None)
    choices = {}
    for name, routes in ROUTE_ROWS.items():
        choice = choose_route(val_vectors, side, weights, scales, routes)
        choices[name] = choice
        row_weights = ChannelWeights(choice["appearance_weight"], weights.latent, weights.shape)
        report(name, row_weights, choice["factors"] if "w" in routes else None,
               choice["factors"] if "appearance" in routes else None)
    return {"rows": rows, "choices": choices, "signs": list(directions.names),
            "validation_queries": len(validation.sketches), "test_queries": len(test.sketches)}


def preferred_choice(report: dict[str, Any]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """The route row validation prefers (highest validation diagnosis precision@10; on a tie the one
    applying fewer edits, first in `ROUTE_ROWS`), its routes and its choice, from `evaluate_signs`'s report."""
    name = max(ROUTE_ROWS, key=lambda row: (report["choices"][row]["validation_diagnosis_precision"], -len(ROUTE_ROWS[row])))
    return name, ROUTE_ROWS[name], report["choices"][name]


def record_choice(directions: SignDirections, report: dict[str, Any], evidence: dict[str, Any]) -> SignDirections:
    """`directions` with the preferred route's per-sign strengths and appearance weight as their defaults
    (what "present" means, `generation.signs`), and `evidence` (what they were chosen on) beside them."""
    name, routes, choice = preferred_choice(report)
    return directions.with_chosen(routes, choice["factors"], choice["appearance_weight"],
                                  {**evidence, "route_row": name, "validation_queries": report["validation_queries"],
                                   "validation_diagnosis_precision": choice["validation_diagnosis_precision"]})
