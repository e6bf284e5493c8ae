"""Relevance feedback: the rules on their own, and the learning test on phantoms (a real archive,
real FAISS, the shipped bundle): two rounds of marking right the hits of the query's diagnosis raise
diagnosis precision@10 on held-out queries, with constants chosen on other (validation) queries, and
a case marked not this never comes back in a later round."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.sketches import DEFAULT_STYLE, draw_freehand
from indexing.settings import Settings
from indexing.vectors import ArchiveModels
from phantoms.dataset import generate_dataset
from phantoms.reader import case_column, case_ids, dataset_categories, read_mask
from retrieval.engine import Query, SearchEngine
from retrieval.engine import kept_first
from retrieval.feedback import APPEARANCE_ONLY, FeedbackConfig, rocchio
from retrieval.results import ChannelScores
from retrieval.feedback_eval import choose_config, diagnosis_precision, excluded_returned, first_searches, marks, rounds
from tests.indexing.conftest import TEST_KEY
from tests.retrieval.conftest import SIDE, indexed_archive

ARCHIVE, QUERIES, SEED = 60, 24, 35


def test_rocchio_moves_toward_the_right_and_away_from_the_wrong_keeping_the_length() -> None:
    rng = np.random.default_rng(0)
    query, right, wrong = rng.normal(size=16), rng.normal(size=(3, 16)), rng.normal(size=(2, 16))
    moved = rocchio(query, right, wrong, FeedbackConfig(toward=1.0, away=0.5))
    cosine = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert np.linalg.norm(moved) == pytest.approx(np.linalg.norm(query), rel=1e-5)
    assert cosine(moved, right.mean(0)) > cosine(query, right.mean(0))
    assert cosine(moved, wrong.mean(0)) < cosine(query, wrong.mean(0))
    assert np.allclose(rocchio(query, right[:0], wrong[:0], FeedbackConfig()), query)  # no marks: no move


def test_kept_cases_come_first_in_their_order_then_the_ranking() -> None:
    scores = ChannelScores(0.0, 0.0, 0.0)
    ranked = [(5, 3.0, scores), (7, 2.0, scores), (9, 1.0, scores), (2, 0.5, scores)]
    assert [item[0] for item in kept_first(ranked, (9, 2))] == [9, 2, 5, 7]
    assert kept_first(ranked, ()) == ranked


@pytest.fixture(scope="module")
def phantom_engine(tmp_path_factory: pytest.TempPathFactory, archive_models: ArchiveModels):
    """An engine over 60 indexed phantoms, and 24 held-out cases drawn free-hand with their diagnoses."""
    root = tmp_path_factory.mktemp("feedback")
    archive = generate_dataset(root / "archive", ARCHIVE, SIDE, SEED, workers=1)
    held = generate_dataset(root / "held", QUERIES, SIDE, SEED, workers=1, start=ARCHIVE)
    settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'archive.sqlite3'}", pseudonym_key=TEST_KEY)
    indexed_archive(settings, archive, archive_models)
    categories, diagnosis = dataset_categories(held), case_column(held, "diagnosis")
    names = case_ids(held)
    sketches = [draw_freehand(read_mask(held, name), categories[name], name, DEFAULT_STYLE, i, 256, SEED) for i, name in enumerate(names)]
    engine = SearchEngine.open(settings)
    yield engine, sketches, [diagnosis[name] for name in names]
    engine.close()


def test_two_rounds_of_marks_raise_precision_and_never_bring_back_a_not_this_case(phantom_engine) -> None:
    engine, sketches, diagnoses = phantom_engine
    firsts = first_searches(engine, sketches, engine.build.weights)
    half = len(firsts) // 2
    grid = {"toward": (2.0, 8.0), "away": (0.0, 4.0), "marked_weights": (None, APPEARANCE_ONLY)}
    chosen, _ = choose_config(engine, firsts[:half], diagnoses[:half], grid=grid)  # chosen on validation queries
    chain = rounds(engine, firsts[half:], diagnoses[half:], chosen, 2)
    precision = [diagnosis_precision(steps, diagnoses[half:]).mean() for steps in chain]
    print(f"diagnosis precision@10 on {len(firsts) - half} held-out queries, rounds 0/1/2: {precision} ({chosen})")
    assert precision[1] >= precision[0] + 0.1 and precision[2] >= precision[1]  # 0.26 -> 0.55 -> 0.67 when written
    for zero, first, second, diagnosis in zip(chain[0], chain[1], chain[2], diagnoses[half:]):
        _, unlike = marks(first.result, diagnosis)
        assert set(first.exclude) <= set(second.exclude) and set(unlike) <= set(second.exclude)
        assert set(second.exclude).isdisjoint(hit.image_id for hit in second.result.hits)  # round one's too
        like, _ = marks(zero.result, diagnosis)  # the first round's right cases lead every later round, in their order
        assert [hit.image_id for hit in first.result.hits[: len(like)]] == like == list(second.keep[: len(like)])
        assert [hit.image_id for hit in second.result.hits[: len(second.keep)]] == list(second.keep)[:10]
    assert excluded_returned(chain[2]) == 0 and len(chain[2][0].result.hits) == 10


def test_a_query_by_vectors_reproduces_its_search_and_drops_excluded_cases(phantom_engine) -> None:
    engine, sketches, _ = phantom_engine
    first = engine.search(sketches[0], k=10)
    again = engine.search_many([Query(None, 10, vectors=first.vectors)])[0]
    assert [hit.image_id for hit in again.hits] == [hit.image_id for hit in first.hits] and again.sketch is None
    dropped = (first.hits[0].image_id, first.hits[4].image_id)
    without = engine.search_many([Query(None, 10, vectors=first.vectors, exclude=dropped)])[0]
    assert set(dropped).isdisjoint(hit.image_id for hit in without.hits) and len(without.hits) == 10
    with pytest.raises(ValueError):
        Query(sketches[0], vectors=first.vectors)
