"""Sketch + true signs: the rows of the retrieval evaluation that add each query's own clinical signs (issue 38).

A query's signs are the ones its drawn case carries, present, and the others absent (what a
clinician who saw the throat would say of each sign); the ranking never reads the archive's labels. Rows, per set of test queries (seen and unseen
drawer styles apart): contour chamfer and the fused ranking of the sketch alone; the fused ranking
with the signs applied in the appearance space only, in W only (G and H draw the edited w; its
appearance and latent vectors are what is scored), and both; and an upper reference that does read
labels, `REFERENCE_ROW`: chamfer over the archive cases a findings filter lets through when a seeded
`LABELLED_SHARE` of the archive is labelled (a labelled case passes when its signs include all of
the query's, as the engine's findings filter does; an unlabelled case never passes, and an empty
top-10 slot counts as a miss). Reported per row: diagnosis precision@10 (overall and per
diagnosis), exact-case recall@10, and the sign-match rate@10, the share of the top 10 whose archive
signs include all of the query's (over the similar-case queries that carry a sign), and per sign the
share of the top 10 carrying it (over the queries that ask it); the archive's labels serve the
measurement only.

For each route the per-sign strength factors, for a sign present and for it absent (multiples of
the stored steps; 0 leaves a sign out: absent signs start left out, so a route that gains nothing by
them keeps them out), the appearance channel's weight and the latent channel's (a share of the
sketch-only one: E's w carries the findings E guessed from an outline, which the stated signs may
contradict) are chosen on the validation queries: the highest diagnosis precision@10, averaged over
the diagnoses so that each counts alike (the goal is every diagnosis, and a rare one is what a push
towards the common ones costs), among the choices whose exact-case recall@10 is no worse than the
sketch alone's on the same validation queries (the signs re-order shape-similar cases; they must not
drown the shape evidence). Test queries and unseen styles only report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from generation.signs import SignDirections
from indexing.fused_index import ChannelWeights
from indexing.shape import ShapeConfig, query_vectors
from indexing.vectors import APPEARANCE, LATENT, SHAPE, latent_vectors
from retrieval import metrics
from retrieval.engine import SearchEngine
from retrieval.evaluation import BATCH, CHAMFER_UNTRUNCATED, ArchiveSide

FACTOR_GRID = (0.0, 0.5, 1.0, 2.0, 4.0)
APPEARANCE_WEIGHT_GRID = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
ASCENT_PASSES = 3  # coordinate-ascent passes over the signs' factors, fewer when a pass changes none
LATENT_SHARE_GRID = (0.0, 0.25, 0.5, 1.0)  # a sign query's latent weight, as a share of the sketch-only one
ROUTE_ROWS = {"fused_signs_appearance": ("appearance",), "fused_signs_w": ("w",), "fused_signs_both": ("w", "appearance")}
CHAMFER_ROW, SKETCH_ROW, REFERENCE_ROW = "chamfer", "fused", "chamfer_labelled20"
LABELLED_SHARE = 0.2
ABSENT_KEY = ":absent"
Factors = dict[str, float]  # per sign present: "exudate"; per sign absent: "exudate" + ABSENT_KEY


@dataclass(frozen=True)
class SignQueries:
    """Sketches with their true signs and truth: diagnoses (similar-case) or archive columns (exact-case)."""

    sketches: list[np.ndarray]
    signs: list[dict[str, float]]  # per query: {sign: 1.0} for each sign its case carries, -1.0 for each it lacks
    diagnoses: np.ndarray | None = None  # object [Q]
    columns: np.ndarray | None = None  # int [Q]


@dataclass(frozen=True)
class SignQuerySet:
    """One split's similar-case and exact-case queries."""

    similar: SignQueries
    exact: SignQueries


class QueryVectors:
    """The query-side channel vectors of a set of queries; W edits are run on demand and kept per query
    and per strength of that query's own signs, so trying one sign's factor re-runs only its queries."""

    def __init__(self, engine: SearchEngine, directions: SignDirections, queries: SignQueries) -> None:
        self.engine, self.directions, self.queries = engine, directions, queries
        self.canonical = engine.canonicalise(queries.sketches)
        self.shape = query_vectors(self.canonical, engine.build.shape)
        self.chamfer = query_vectors(self.canonical, ShapeConfig(side=engine.build.shape.side, truncation=CHAMFER_UNTRUNCATED))
        self._runs: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._products: dict[tuple, np.ndarray] = {}

    def _strengths(self, row: int, w_factors: Factors | None) -> dict[str, float]:
        if w_factors is None:
            return {}
        return {sign: value for sign, value in scaled(self.queries.signs[row], w_factors).items() if value}

    def appearance_latent(self, w_factors: Factors | None) -> tuple[np.ndarray, np.ndarray]:
        """[Q, D] appearance of x_T and [Q, w_dim] latent vectors, with the W edits at `w_factors` (None: none)."""
        strengths = [self._strengths(row, w_factors) for row in range(len(self.canonical))]
        keys = [(row, tuple(sorted(one.items()))) for row, one in enumerate(strengths)]
        missing = [row for row, key in enumerate(keys) if key not in self._runs]
        for start in range(0, len(missing), BATCH):
            rows = missing[start:start + BATCH]
            with torch.no_grad():  # the engine's own W edit: each sign on its chosen style inputs of G
                output = self.engine.models.generate(self.canonical[rows], self.engine.config.steps,
                                                     [strengths[row] for row in rows], ("w",))
            appearance = self.engine.embedder.describe(output.image).numpy()
            latent = latent_vectors(output.w, self.engine.pipeline.encoder.w_avg)
            for j, row in enumerate(rows):
                self._runs[keys[row]] = (appearance[j], latent[j])
        return np.stack([self._runs[key][0] for key in keys]), np.stack([self._runs[key][1] for key in keys])

    def scores(self, side: ArchiveSide, weights: ChannelWeights, scales: dict[str, float],
               w_factors: Factors | None, appearance_factors: Factors | None, outline_only: bool = False) -> np.ndarray:
        """Fused scores [Q, N] against the archive with the given edits (None: that route off); `outline_only`:
        the latent vectors of queries with signs drop their parts along the signs' W directions, as the engine
        does when validation chose so."""
        w_key = None if w_factors is None else tuple(sorted(w_factors.items()))
        a_key = None if appearance_factors is None else tuple(sorted(appearance_factors.items()))
        channels = side.vectors.channels

        def product(name: str, key: tuple, vectors) -> np.ndarray:  # type: ignore[no-untyped-def]
            """A channel's [Q, N] similarities, kept per edit (the appearance channel's last one only: each
            trial of a choice edits it anew, while the weights' grid re-weighs the same ones many times)."""
            cached = (name, id(side), key)
            if cached not in self._products:
                if name == APPEARANCE:
                    self._products = {k: v for k, v in self._products.items() if k[0] != APPEARANCE}
                self._products[cached] = vectors() @ channels[name].T
            return self._products[cached]

        def appearance() -> np.ndarray:
            vectors = self.appearance_latent(w_factors)[0]
            if appearance_factors is None:
                return vectors
            return np.stack([self.directions.edit_appearance(vector, scaled(one, appearance_factors), ("appearance",))
                             for vector, one in zip(vectors, self.queries.signs)])

        def latent() -> np.ndarray:
            vectors = self.appearance_latent(w_factors)[1]
            signed = np.array([bool(one) for one in self.queries.signs])
            if not outline_only or not signed.any():
                return vectors
            vectors = vectors.copy()  # the cached run stays as E gave it
            vectors[signed] = self.directions.outline_latent(vectors[signed])
            return vectors

        return (weights.appearance * scales[APPEARANCE] * product(APPEARANCE, (w_key, a_key), appearance)
                + weights.latent * scales[LATENT] * product(LATENT, (w_key, outline_only), latent)
                + weights.shape * scales[SHAPE] * product(SHAPE, (), lambda: self.shape))

    def chamfer_scores(self, side: ArchiveSide) -> np.ndarray:
        return self.chamfer @ side.chamfer.T


def scaled(strengths: dict[str, float], factors: Factors) -> dict[str, float]:
    """A query's true signs (1 present, -1 absent) times the factors for that sign present or absent."""
    return {sign: strength * factors.get(sign if strength > 0 else sign + ABSENT_KEY, 1.0) for sign, strength in strengths.items()}


def chosen_factors(choice: dict[str, Any]) -> Factors:
    """A route's chosen factors, present and absent, as `scaled` reads them."""
    return {**choice["factors"], **{sign + ABSENT_KEY: factor for sign, factor in choice.get("absent_factors", {}).items()}}


def sign_sets(signs: list[dict[str, float]]) -> list[frozenset]:
    """Per query, the signs it says are present."""
    return [frozenset(sign for sign, strength in one.items() if strength > 0) for one in signs]


def labelled_columns(count: int, seed: int, share: float = LABELLED_SHARE) -> np.ndarray:
    """bool [N]: the seeded `share` of the archive whose metadata the reference may read."""
    labelled = np.zeros(count, dtype=bool)
    labelled[np.random.default_rng(seed).choice(count, int(round(share * count)), replace=False)] = True
    return labelled


def reference_scores(chamfer: np.ndarray, queries: SignQueries, archive_signs: list[frozenset],
                     labelled: np.ndarray) -> np.ndarray:
    """Chamfer scores [Q, N] with every case the findings filter drops at -inf (never returned): unlabelled
    cases, and labelled ones whose signs do not include all of the query's."""
    passes = np.array([[labelled[column] and wanted <= archive_signs[column] for column in range(len(archive_signs))]
                       for wanted in sign_sets(queries.signs)], dtype=bool).reshape(chamfer.shape)
    return np.where(passes, chamfer, -np.inf)


@dataclass(frozen=True)
class Validation:
    """The validation queries' vectors and which exact-case queries the sketch alone finds in its top 10:
    a sign row must find each of those too."""

    similar: QueryVectors
    exact: QueryVectors
    sketch_hits: np.ndarray  # bool per exact-case query

    @property
    def recall_floor(self) -> float:
        """The sketch-only exact-case recall@10."""
        return float(self.sketch_hits.mean())


def choose_route(validation: Validation, side: ArchiveSide, weights: ChannelWeights, scales: dict[str, float],
                 routes: tuple[str, ...]) -> dict[str, Any]:
    """Per-sign factors (coordinate ascent over FACTOR_GRID, the channel weights chosen again after each pass:
    a sign said absent may pay only once the others have moved), the appearance weight (at least the
    sketch-only one, as the engine applies it), the latent weight (a share of the sketch-only one) and whether the
    latent keeps the outline only (its parts along the signs' W directions dropped) for one route: first lose
    none of the validation cases the sketch alone finds in its top 10 (a mean recall held at the sketch's could
    trade lost cases for found ones, and on test queries it fell below), then the highest diagnosis
    precision@10, averaged over the diagnoses (each counts alike: a rare one, such as acute tonsillitis, red *without* exudate, is what
    a push towards the common ones costs)."""
    names = validation.similar.directions.names
    diagnoses = validation.similar.queries.diagnoses

    def evaluate(factors: dict[str, float], channel: tuple[float, float, bool]) -> tuple[float, float, float, float]:
        row_weights = ChannelWeights(channel[0], channel[1], weights.shape)
        edits = (factors if "w" in routes else None, factors if "appearance" in routes else None, channel[2])
        precision = metrics.precision_at(validation.similar.scores(side, row_weights, scales, *edits), diagnoses, side.diagnoses)
        ranks = metrics.true_ranks(validation.exact.scores(side, row_weights, scales, *edits), validation.exact.queries.columns)
        hits = metrics.recall_at(ranks, metrics.K) > 0
        macro = float(np.mean([precision[diagnoses == one].mean() for one in set(diagnoses)]))
        return -float((validation.sketch_hits & ~hits).mean()), macro, float(hits.mean()), float(precision.mean())

    def best_weights(factors: dict[str, float]) -> tuple[tuple[float, float, float, float], tuple[float, float, bool]]:
        latents = sorted({share * weights.latent for share in LATENT_SHARE_GRID}, reverse=True)
        usable = [(value, latent, outline) for value in APPEARANCE_WEIGHT_GRID for latent in latents for outline in (False, True)
                  if value >= weights.appearance and (value or latent or weights.shape) and (latent or not outline)]
        return max(((evaluate(factors, channel), channel) for channel in usable), key=lambda pair: pair[0][:2])

    factors = {sign: 1.0 for sign in names} | {sign + ABSENT_KEY: 0.0 for sign in names}
    value, channel = best_weights(factors)
    for _ in range(ASCENT_PASSES):
        changed = False
        for sign in (*names, *(name + ABSENT_KEY for name in names)):
            for factor in FACTOR_GRID:
                trial = {**factors, sign: factor}
                trial_value = evaluate(trial, channel)
                if trial_value[:2] > (value[0], value[1] + 1e-9):
                    value, factors, changed = trial_value, trial, True
        value, channel = best_weights(factors)
        if not changed:
            break
    return {"appearance_weight": channel[0], "latent_weight": channel[1], "latent_outline_only": channel[2],
            "factors": {sign: factors[sign] for sign in names},
            "absent_factors": {sign: factors[sign + ABSENT_KEY] for sign in names},
            "validation_diagnosis_precision": round(value[3], 4), "validation_macro_precision": round(value[1], 4),
            "validation_exact_recall@10": round(value[2], 4), "keeps_sketch_recall": value[0] == 0.0}


def row_figures(similar: np.ndarray, exact: np.ndarray, queries: SignQuerySet, side: ArchiveSide,
                archive_signs: list[frozenset], seed: int) -> dict[str, Any]:
    """One row's figures from its scores of the similar-case [Qs, N] and exact-case [Qe, N] queries."""
    diagnoses = queries.similar.diagnoses
    precision = metrics.precision_at(similar, diagnoses, side.diagnoses)
    wanted = sign_sets(queries.similar.signs)
    with_signs = np.array([bool(one) for one in wanted])
    match = metrics.inclusion_at(similar[with_signs], [one for one in wanted if one], archive_signs)
    per_sign = {}
    for sign in sorted(set().union(*wanted)):
        carrying = np.array([sign in one for one in wanted])
        per_sign[sign] = metrics.summary(metrics.inclusion_at(similar[carrying], [frozenset({sign})] * int(carrying.sum()),
                                                              archive_signs), seed)
    ranks = metrics.true_ranks(exact, queries.exact.columns)
    return {"diagnosis_precision@10": metrics.summary(precision, seed),
            "per_diagnosis": {str(d): metrics.summary(precision[diagnoses == d], seed) for d in sorted(set(diagnoses))},
            "exact_recall@10": metrics.summary(metrics.recall_at(ranks, metrics.K), seed),
            "sign_match@10": metrics.summary(match, seed), "sign_match_per_sign@10": per_sign}


def evaluate_signs(engine: SearchEngine, side: ArchiveSide, weights: ChannelWeights, validation: SignQuerySet,
                   tests: dict[str, SignQuerySet], archive_signs: list[frozenset], seed: int = 0) -> dict[str, Any]:
    """The sign rows: choices made on `validation`, every row reported on each set of `tests` (e.g. "seen",
    "unseen"); `archive_signs` (per archive column) serve the sign-match rate and the labelled reference only."""
    directions = engine.models.signs
    if directions is None:
        raise ValueError("the bundle has no sign directions: run `s2m train signs` first")
    scales = engine.build.scales
    exact_val = QueryVectors(engine, directions, validation.exact)
    sketch_hits = metrics.recall_at(metrics.true_ranks(exact_val.scores(side, weights, scales, None, None),
                                                       validation.exact.columns), metrics.K) > 0
    checked = Validation(QueryVectors(engine, directions, validation.similar), exact_val, sketch_hits)
    choices = {name: choose_route(checked, side, weights, scales, routes) for name, routes in ROUTE_ROWS.items()}
    labelled = labelled_columns(len(side.case_refs), seed)
    rows: dict[str, dict[str, Any]] = {}
    for set_name, queries in tests.items():
        similar, exact = QueryVectors(engine, directions, queries.similar), QueryVectors(engine, directions, queries.exact)
        pairs = {CHAMFER_ROW: (similar.chamfer_scores(side), exact.chamfer_scores(side)),
                 SKETCH_ROW: (similar.scores(side, weights, scales, None, None), exact.scores(side, weights, scales, None, None))}
        for name, routes in ROUTE_ROWS.items():
            choice = choices[name]
            row_weights = ChannelWeights(choice["appearance_weight"], choice["latent_weight"], weights.shape)
            factors = chosen_factors(choice)
            edits = (factors if "w" in routes else None, factors if "appearance" in routes else None,
                     choice["latent_outline_only"])
            pairs[name] = (similar.scores(side, row_weights, scales, *edits), exact.scores(side, row_weights, scales, *edits))
        pairs[REFERENCE_ROW] = (reference_scores(pairs[CHAMFER_ROW][0], queries.similar, archive_signs, labelled),
                                reference_scores(pairs[CHAMFER_ROW][1], queries.exact, archive_signs, labelled))
        rows[set_name] = {name: row_figures(*pair, queries, side, archive_signs, seed) for name, pair in pairs.items()}
    return {"rows": rows, "choices": choices, "signs": list(directions.names), "validation_exact_recall_floor": round(checked.recall_floor, 4),
            "labelled_share": LABELLED_SHARE, "labelled_cases": int(labelled.sum()),
            "validation_queries": {"similar": len(validation.similar.sketches), "exact": len(validation.exact.sketches)},
            "test_queries": {name: {"similar": len(q.similar.sketches), "exact": len(q.exact.sketches)} for name, q in tests.items()}}


def preferred_choice(report: dict[str, Any]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """The route row validation prefers (loses none of the sketch's exact-case hits, then the highest validation
    diagnosis precision@10 averaged over the diagnoses; on a tie the one applying fewer edits, first in
    `ROUTE_ROWS`), its routes and its choice, from `evaluate_signs`'s report."""
    def rank(row: str) -> tuple[bool, float, int]:
        choice = report["choices"][row]
        return choice["keeps_sketch_recall"], choice["validation_macro_precision"], -len(ROUTE_ROWS[row])
    name = max(ROUTE_ROWS, key=rank)
    return name, ROUTE_ROWS[name], report["choices"][name]


def record_choice(directions: SignDirections, report: dict[str, Any], evidence: dict[str, Any]) -> SignDirections:
    """`directions` with the preferred route's per-sign strengths, present and absent, and channel weights as
    their defaults (what "present" and "absent" mean, `generation.signs`), and `evidence` (what they were
    chosen on) beside them."""
    name, routes, choice = preferred_choice(report)
    evidence = {**evidence, "route_row": name, "validation_queries": report["validation_queries"],
                "validation_diagnosis_precision": choice["validation_diagnosis_precision"],
                "validation_macro_precision": choice["validation_macro_precision"],
                "validation_exact_recall@10": choice["validation_exact_recall@10"],
                "validation_exact_recall_floor": report["validation_exact_recall_floor"]}
    return directions.with_chosen(routes, choice["factors"], choice["appearance_weight"], evidence, choice["absent_factors"],
                                  choice["latent_weight"], choice["latent_outline_only"])
