"""Relevance feedback: the rules on their own, and the learning test on phantoms (a real archive,
real FAISS, the shipped bundle): marking right the hits of the query's diagnosis raises diagnosis
precision@10 on held-out queries, with constants chosen on other (validation) queries."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.feedback_run import feedback_setup
from generation.bundle import Bundle
from generation.presets import SHIPPED_BUNDLE
from indexing.fused_index import ChannelWeights
from indexing.vectors import ArchiveModels
from retrieval.engine import Query, SearchEngine
from retrieval.feedback import FeedbackConfig, ranking_agreement, reweighted, rocchio
from retrieval.feedback_eval import choose_config, feedback_run, first_searches
from tests.indexing.conftest import TEST_KEY

ARCHIVE, QUERIES, SEED = 120, 40, 35


def test_rocchio_moves_toward_the_right_and_away_from_the_wrong_keeping_the_length() -> None:
    rng = np.random.default_rng(0)
    query, right, wrong = rng.normal(size=16), rng.normal(size=(3, 16)), rng.normal(size=(2, 16))
    moved = rocchio(query, right, wrong, FeedbackConfig(toward=1.0, away=0.5))
    cosine = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert np.linalg.norm(moved) == pytest.approx(np.linalg.norm(query), rel=1e-5)
    assert cosine(moved, right.mean(0)) > cosine(query, right.mean(0))
    assert cosine(moved, wrong.mean(0)) < cosine(query, wrong.mean(0))
    assert np.allclose(rocchio(query, right[:0], wrong[:0], FeedbackConfig()), query)  # no marks: no move


def test_channels_gain_weight_by_how_well_they_ordered_the_marks() -> None:
    assert ranking_agreement([3.0, 2.0], [1.0]) == 1.0 and ranking_agreement([1.0], [1.0, 2.0]) == 0.25
    assert ranking_agreement([1.0], []) is None
    scores = {1: {"appearance": 0.9, "latent": 0.1, "shape": -2.0}, 2: {"appearance": 0.2, "latent": 0.5, "shape": -1.0}}
    moved = reweighted(ChannelWeights(), scores, like=[1], unlike=[2], config=FeedbackConfig(reweight=1.0))
    # appearance put the right case first (+1), latent and shape the wrong one (-1, floored at 0)
    assert (moved.appearance, moved.latent, moved.shape) == (1.0, 0.0, 0.0)
    assert reweighted(ChannelWeights(), scores, like=[1, 2], unlike=[], config=FeedbackConfig()) == ChannelWeights()


@pytest.fixture(scope="module")
def phantom_engine(tmp_path_factory: pytest.TempPathFactory, archive_models: ArchiveModels):
    """An engine over 120 indexed phantoms, and 40 held-out cases drawn free-hand with their diagnoses."""
    setup = feedback_setup(tmp_path_factory.mktemp("feedback"), Bundle.open(SHIPPED_BUNDLE), ARCHIVE, QUERIES, SEED,
                           archive_models, TEST_KEY)
    engine = SearchEngine.open(setup.settings)
    yield engine, setup.sketches, setup.diagnoses
    engine.close()


def test_marking_the_right_diagnosis_raises_precision_at_10_on_held_out_queries(phantom_engine) -> None:
    engine, sketches, diagnoses = phantom_engine
    firsts = first_searches(engine, sketches)
    half = len(firsts) // 2
    grid = {"toward": (0.0, 8.0), "away": (0.0, 0.5), "reweight": (0.0, 8.0)}
    chosen, means = choose_config(engine, firsts[:half], diagnoses[:half], grid=grid)
    assert means[chosen] > means[FeedbackConfig(toward=0.0, away=0.0, reweight=0.0)]  # more than dropping the wrong ones
    held_out = feedback_run(engine, firsts[half:], diagnoses[half:], chosen)
    default = feedback_run(engine, firsts[half:], diagnoses[half:], FeedbackConfig())
    print(f"diagnosis precision@10 on {len(firsts) - half} held-out queries: {held_out.before.mean():.3f} -> "
          f"{held_out.after.mean():.3f} (chosen {chosen}), {default.after.mean():.3f} (defaults)")
    assert held_out.gain >= 0.15 and default.gain >= 0.15
    assert (held_out.after >= held_out.before).mean() >= 0.8  # nearly every query gains or keeps


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
