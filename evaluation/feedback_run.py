"""The relevance-feedback measurement on phantoms (docs/benchmarks.md, issue 35): an archive of
phantoms indexed with a bundle, held-out phantoms drawn free-hand as queries, the feedback
constants chosen on the first half of the queries and reported on the second
(`retrieval/feedback_eval.py`). `benchmarks/feedback_eval.py` prints it; the learning test
(tests/retrieval/test_feedback.py) builds its archive and queries here too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from generation.bundle import Bundle
from indexing.prepare import prepare_archive
from indexing.settings import Settings
from indexing.vectors import ArchiveModels

CANVAS = 256


@dataclass(frozen=True)
class FeedbackSetup:
    settings: Settings  # the indexed phantom archive
    sketches: list[np.ndarray]  # held-out cases drawn free-hand (default drawer style)
    diagnoses: list[str]  # each query case's diagnosis


def feedback_setup(root: Path, bundle: Bundle, archive_count: int, queries: int, seed: int,
                   models: ArchiveModels | None = None, pseudonym_key: bytes = b"feedback-eval") -> FeedbackSetup:
    """`archive_count` phantoms at the bundle's side, made searchable with it in a SQLite archive under
    `root`, and `queries` further phantoms of the same seed drawn as query sketches."""
    from evaluation.sketches import DEFAULT_STYLE, draw_freehand
    from phantoms.dataset import generate_dataset
    from phantoms.reader import case_column, case_ids, dataset_categories, read_mask

    stored = generate_dataset(root / "archive", archive_count, bundle.resolution, seed, workers=1)
    held = generate_dataset(root / "held", queries, bundle.resolution, seed, workers=1, start=archive_count)
    settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'archive.sqlite3'}", pseudonym_key=pseudonym_key)
    prepare_archive(settings, stored, bundle, models=models)
    categories, diagnosis = dataset_categories(held), case_column(held, "diagnosis")
    names = case_ids(held)
    sketches = [draw_freehand(read_mask(held, name), categories[name], name, DEFAULT_STYLE, i, CANVAS, seed) for i, name in enumerate(names)]
    return FeedbackSetup(settings, sketches, [diagnosis[name] for name in names])


def feedback_report(setup: FeedbackSetup, seed: int = 0) -> dict[str, Any]:
    """Constants chosen on the first half of the queries; precision@10 before and after one round on
    the second half, for the chosen constants and for each part of the rule alone."""
    from retrieval.engine import SearchEngine
    from retrieval.feedback import FeedbackConfig
    from retrieval.feedback_eval import choose_config, feedback_run, first_searches
    from retrieval.metrics import summary

    engine = SearchEngine.open(setup.settings)
    try:
        firsts = first_searches(engine, setup.sketches)
        half = len(firsts) // 2
        chosen, means = choose_config(engine, firsts[:half], setup.diagnoses[:half])
        rows = {"chosen": chosen, "exclusion only": FeedbackConfig(toward=0.0, away=0.0, reweight=0.0),
                "Rocchio only": FeedbackConfig(toward=1.0, away=0.25, reweight=0.0),
                "re-weighting only": FeedbackConfig(toward=0.0, away=0.0, reweight=1.0)}
        runs = {name: feedback_run(engine, firsts[half:], setup.diagnoses[half:], config) for name, config in rows.items()}
    finally:
        engine.close()
    return {
        "chosen": chosen.__dict__, "validation_best": sorted(means.values(), reverse=True)[:8],
        "before": summary(runs["chosen"].before, seed),
        "after": {name: summary(run.after, seed) for name, run in runs.items()},
    }
