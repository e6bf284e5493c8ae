"""`s2m eval retrieval --feedback`: the relevance-feedback rows (issue 35) over the evaluation's own queries.

The simulated user of `retrieval.feedback_eval` marks each query's top 10 (the query case's diagnosis
right, the rest not this) for zero, one and two rounds of the API's refinement. Diagnosis precision@10
is read on the similar-case queries (held-out cases), exact-case recall@10 on the exact-case ones
(drawn archive images), seen and unseen drawer styles apart. The first searches rank by the fusion
weights the evaluation chose on validation; the feedback constants are chosen on the validation
queries of the seen styles only (`choose_config`), and the test queries are reported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from indexing.fused_index import ChannelWeights
from retrieval.evaluation import TEST, VAL, ArchiveSide, QueryGroup
from retrieval.engine import SearchEngine
from retrieval.feedback import FeedbackConfig
from retrieval.feedback_eval import (Searched, choose_config, diagnosis_precision, excluded_returned, exact_recall,
                                     first_searches, label, rounds)
from retrieval.metrics import summary

ROUNDS = 2
GOAL_PRECISION = 0.80  # issue 35: diagnosis precision@10 after one round


@dataclass(frozen=True)
class FeedbackQueries:
    """The similar-case and exact-case queries of some groups, first searched, with their truth."""

    similar: list[Searched]
    diagnoses: list[str]  # of the similar-case queries' cases
    exact: list[Searched]
    exact_diagnoses: list[str]  # of the drawn archive images
    exact_ids: list[int]  # the drawn archive images' ids


def searched(engine: SearchEngine, side: ArchiveSide, groups: list[QueryGroup], weights: ChannelWeights) -> FeedbackQueries:
    columns = np.concatenate([g.exact_columns for g in groups]) if groups else np.zeros(0, int)
    return FeedbackQueries(
        first_searches(engine, [s for g in groups for s in g.similar_sketches], weights),
        [str(d) for g in groups for d in g.diagnoses],
        first_searches(engine, [s for g in groups for s in g.exact_sketches], weights),
        [str(side.diagnoses[c]) for c in columns], [int(side.vectors.ids[c]) for c in columns])


def feedback_rows(engine: SearchEngine, side: ArchiveSide, groups: list[QueryGroup], weights: dict[str, float],
                  unseen: tuple[str, ...], seed: int = 0) -> dict[str, Any]:
    """Constants chosen on the seen styles' validation queries; per round, the seen and unseen styles' test
    queries' diagnosis precision@10 and exact-case recall@10 with bootstrap intervals, and the goals read."""
    started = time.perf_counter()
    fused = ChannelWeights(**weights)
    validation = searched(engine, side, [g for g in groups if g.split == VAL and g.style not in unseen], fused)
    chosen, grid = choose_config(engine, validation.similar, validation.diagnoses, validation.exact,
                                 validation.exact_diagnoses, validation.exact_ids)
    report: dict[str, Any] = {}
    for name in ("seen", "unseen"):
        tested = [g for g in groups if g.split == TEST and g.in_breakdowns and (g.style in unseen) == (name == "unseen")]
        queries = searched(engine, side, tested, fused)
        similar = rounds(engine, queries.similar, queries.diagnoses, chosen, ROUNDS)
        exact = rounds(engine, queries.exact, queries.exact_diagnoses, chosen, ROUNDS)
        rows = {f"round {r}": {"diagnosis_precision@10": summary(diagnosis_precision(similar[r], queries.diagnoses), seed),
                               "exact_recall@10": summary(exact_recall(exact[r], queries.exact_ids), seed)}
                for r in range(ROUNDS + 1)}
        report[name] = {
            "rows": rows, "queries": {"similar": len(queries.similar), "exact": len(queries.exact)},
            "not_this_returned": sum(excluded_returned(similar[r]) + excluded_returned(exact[r]) for r in range(1, ROUNDS + 1)),
            "goals": {"precision@10_after_one_round_at_least_0.80":
                      rows["round 1"]["diagnosis_precision@10"]["mean"] >= GOAL_PRECISION,
                      "exact_recall@10_not_lower_after_one_round":
                      rows["round 1"]["exact_recall@10"]["mean"] >= rows["round 0"]["exact_recall@10"]["mean"]},
        }
    best = sorted(grid.items(), key=lambda item: -item[1]["diagnosis_precision@10"])[:8]
    before = {"diagnosis_precision@10": float(diagnosis_precision(validation.similar, validation.diagnoses).mean()),
              "exact_recall@10": float(exact_recall(validation.exact, validation.exact_ids).mean())}
    return {"config": asdict(chosen), "served": asdict(FeedbackConfig()), "chosen_is_served": chosen == FeedbackConfig(),
            "first_weights": weights, "validation_before": before,
            "validation_chosen": grid[label(chosen)],
            "validation_best": dict(best), "seconds": round(time.perf_counter() - started, 1),
            "validation_queries": {"similar": len(validation.similar), "exact": len(validation.exact)}, **report,
            "note": "a simulated user marks the top 10 by the query case's diagnosis (right) and the rest (not this); "
                    "rounds refine as POST /v1/queries/{id}/refine, not-this cases of every round excluded; "
                    "constants chosen on the seen styles' validation queries"}
