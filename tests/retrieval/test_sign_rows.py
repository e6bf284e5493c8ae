"""The sign rows' measurement pieces (issue 38): the 20 %-labelled reference, the sign-match rate, and
the validation choice that must keep the sketch's exact-case recall."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from indexing.fused_index import ChannelWeights
from retrieval import metrics
from retrieval.sign_evaluation import (ABSENT_KEY, LABELLED_SHARE, SignQueries, SignQuerySet, Validation, choose_route,
                                       chosen_factors, labelled_columns, reference_scores, row_figures, scaled, sign_sets)

SIGNS = ("exudate", "erythema", "cobblestoning")


def _archive_signs(count: int, seed: int) -> list[frozenset]:
    rng = np.random.default_rng(seed)
    return [frozenset(sign for sign in SIGNS if rng.random() < 0.5) for _ in range(count)]


def test_the_labelled_reference_returns_only_labelled_cases_carrying_the_queried_signs() -> None:
    archive = _archive_signs(60, 1)
    labelled = labelled_columns(60, seed=4)
    assert labelled.sum() == round(LABELLED_SHARE * 60)
    assert np.array_equal(labelled, labelled_columns(60, seed=4)) and not np.array_equal(labelled, labelled_columns(60, seed=5))
    asked = [{"exudate": 1.0}, {"exudate": 1.0, "erythema": 1.0}, {}, {sign: 1.0 for sign in SIGNS}]
    queries = SignQueries([], asked, diagnoses=np.array(["a"] * 4, dtype=object), columns=np.array([0, 1, 2, 3]))
    chamfer = np.random.default_rng(2).normal(size=(4, 60))
    scores = reference_scores(chamfer, queries, archive, labelled)
    top = metrics.ranked_columns(scores, 10)
    returned = metrics.returned(scores, top)
    for row, (wanted, columns, shown) in enumerate(zip(sign_sets(asked), top, returned)):
        allowed = [c for c in range(60) if labelled[c] and wanted <= archive[c]]
        assert shown.sum() == min(10, len(allowed)) and 0 < len(allowed)
        assert all(labelled[c] and wanted <= archive[c] for c in columns[shown])
        assert list(columns[shown]) == sorted(allowed, key=lambda c: -chamfer[row, c])[:10]  # chamfer orders what passes
    assert returned[3].sum() < 10  # few labelled cases carry all three signs: the reference leaves slots empty
    # an empty slot is a miss, not a hit: every archive case shares the query's diagnosis here
    precision = metrics.precision_at(scores, queries.diagnoses, np.array(["a"] * 60, dtype=object))
    assert np.allclose(precision, returned.sum(1) / 10)
    # a true case the filter drops is never found, however high its chamfer score
    hidden = int(np.flatnonzero(~labelled)[0])
    chamfer[0, hidden] = 99.0
    ranks = metrics.true_ranks(reference_scores(chamfer, queries, archive, labelled)[:1], np.array([hidden]))
    assert metrics.recall_at(ranks, 10)[0] == 0.0 and metrics.recall_at(metrics.true_ranks(chamfer[:1], np.array([hidden])), 1)[0] == 1.0


def test_a_query_says_each_sign_present_or_absent_each_with_its_own_factor() -> None:
    asked = {"exudate": 1.0, "erythema": -1.0, "cobblestoning": -1.0}
    factors = {"exudate": 2.0, "erythema": 4.0, "erythema" + ABSENT_KEY: 0.5, "cobblestoning" + ABSENT_KEY: 0.0}
    assert scaled(asked, factors) == {"exudate": 2.0, "erythema": -0.5, "cobblestoning": -0.0}
    assert sign_sets([asked]) == [frozenset({"exudate"})]  # what the sign-match rate and the reference ask: present ones
    assert chosen_factors({"factors": {"exudate": 2.0}, "absent_factors": {"exudate": 1.0}}) == {"exudate": 2.0, "exudate" + ABSENT_KEY: 1.0}


def test_the_sign_match_rate_counts_cases_carrying_every_queried_sign() -> None:
    archive = [frozenset({"exudate"}), frozenset({"exudate", "erythema"}), frozenset(), frozenset({"erythema"})]
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    match = metrics.inclusion_at(scores, [frozenset({"exudate"}), frozenset({"exudate", "erythema"})], archive, k=2)
    assert np.allclose(match, [1.0, 0.0])  # top 2: cases 0, 1 (both exudate); cases 3, 2 (neither has both)


class _Scored:
    """Query-side scores of a toy ranking: shape finds each query's own case; the appearance term (on when the
    appearance weight is > 0) pulls every case of the query's diagnosis up, above the own case when heavy; the
    latent term is what E guessed from the outline (`guess`, along the signs' directions: gone when the latent
    keeps the outline only) plus what it read of the outline itself (`outline`); none of either by default."""

    def __init__(self, queries: SignQueries, own: np.ndarray, same: np.ndarray, guess: np.ndarray | None = None,
                 outline: np.ndarray | None = None) -> None:
        self.queries, self.own, self.same = queries, own, same
        self.guess = np.zeros_like(own) if guess is None else guess
        self.outline = np.zeros_like(own) if outline is None else outline
        self.directions = SimpleNamespace(names=SIGNS)

    def scores(self, side, weights, scales, w_factors, appearance_factors, outline_only=False) -> np.ndarray:  # type: ignore[no-untyped-def]
        lift = 0.0 if appearance_factors is None else sum(appearance_factors.values())
        latent = self.outline + (0.0 if outline_only else self.guess)
        return weights.shape * self.own + weights.appearance * (1.0 + lift) * self.same + weights.latent * latent


def _toy(seed: int, own_score: float, unlike_own: bool, guess: float = 0.0, outline: float = 0.0):  # type: ignore[no-untyped-def]
    """An archive of 40 (diagnoses a, b), 8 queries of its cases: shape finds each query's own case at
    `own_score`; appearance pulls up the query's diagnosis (the own case looking unlike it when `unlike_own`);
    the latent term pulls up the other diagnosis by `guess` and the own case by `outline`."""
    rng = np.random.default_rng(seed)
    diagnoses = np.array(["a", "b"] * 20, dtype=object)
    count = 8
    columns = rng.choice(40, count, replace=False)
    query_diagnoses = diagnoses[columns]
    own = rng.normal(scale=0.3, size=(count, 40))
    own[np.arange(count), columns] = own_score
    same = (diagnoses[None, :] == query_diagnoses[:, None]) * 1.0 + rng.normal(scale=0.1, size=(count, 40))
    if unlike_own:
        same[np.arange(count), columns] = -1.0
    wrong = (diagnoses[None, :] != query_diagnoses[:, None]) * guess + rng.normal(scale=0.1, size=(count, 40)) * bool(guess)
    signs = [{"exudate": 1.0} if d == "a" else {"erythema": 1.0} for d in query_diagnoses]
    found = np.zeros((count, 40))
    found[np.arange(count), columns] = outline
    similar = _Scored(SignQueries([], signs, diagnoses=query_diagnoses), own, same, wrong, found)
    exact = _Scored(SignQueries([], signs, columns=columns), own, same, wrong, found)
    return similar, exact, SimpleNamespace(diagnoses=diagnoses), diagnoses, columns, query_diagnoses


def test_the_route_choice_keeps_the_sketch_only_exact_recall_on_validation() -> None:
    # the own case looks unlike its diagnosis: heavy appearance loses it
    similar, exact, side, diagnoses, columns, query_diagnoses = _toy(0, 1.0, unlike_own=True)
    weights = ChannelWeights(0.0, 0.0, 1.0)
    hits = metrics.recall_at(metrics.true_ranks(exact.scores(side, weights, {}, None, None), columns), 10) > 0
    assert hits.all()
    choice = choose_route(Validation(similar, exact, hits), side, weights, {}, ("appearance",))
    assert choice["keeps_sketch_recall"] and choice["validation_exact_recall@10"] == 1.0
    assert set(choice["factors"]) == set(choice["absent_factors"]) == set(SIGNS)
    heavy = ChannelWeights(4.0, 0.0, 1.0)  # what precision alone would take: the own cases fall out of the top 10
    assert metrics.recall_at(metrics.true_ranks(exact.scores(side, heavy, {}, None, choice["factors"]), columns), 10).mean() < 1.0
    chosen = ChannelWeights(choice["appearance_weight"], 0.0, 1.0)
    plain = metrics.precision_at(similar.scores(side, weights, {}, None, None), query_diagnoses, diagnoses).mean()
    assert choice["appearance_weight"] > 0 and choice["validation_diagnosis_precision"] > plain
    precision = metrics.precision_at(similar.scores(side, chosen, {}, None, choice["factors"]), query_diagnoses, diagnoses)
    macro = np.mean([precision[query_diagnoses == one].mean() for one in ("a", "b")])  # what the choice maximises
    assert choice["validation_macro_precision"] == round(float(macro), 4)
    # the report's figures of that row: the sign-match rate counts the archive cases carrying the query's signs
    archive_signs = [frozenset({"exudate"}) if d == "a" else frozenset({"erythema"}) for d in diagnoses]
    figures = row_figures(similar.scores(side, chosen, {}, None, choice["factors"]), exact.scores(side, chosen, {}, None, choice["factors"]),
                          SignQuerySet(similar.queries, exact.queries), side, archive_signs, seed=0)
    sketch = row_figures(similar.scores(side, weights, {}, None, None), exact.scores(side, weights, {}, None, None),
                         SignQuerySet(similar.queries, exact.queries), side, archive_signs, seed=0)
    assert figures["sign_match@10"]["mean"] > sketch["sign_match@10"]["mean"]
    assert figures["exact_recall@10"]["mean"] == 1.0 and set(figures["per_diagnosis"]) == {"a", "b"}


def test_the_route_choice_loses_none_of_the_cases_the_sketch_finds_even_when_it_would_find_as_many_others() -> None:
    """Half the own cases look unlike their diagnosis (appearance loses them), the other half are missed by
    shape and look most like it (appearance finds them): a heavy appearance weight keeps the mean recall and
    gains precision, but only by trading found cases for others; the choice keeps every case the sketch finds."""
    similar, exact, side, diagnoses, columns, query_diagnoses = _toy(7, 1.0, unlike_own=True)
    trade = np.arange(len(columns)) >= len(columns) // 2
    for toy in (similar, exact):
        toy.own[trade, columns[trade]] = -1.0  # shape misses these
        toy.same[trade, columns[trade]] = 3.0  # appearance finds them
    weights = ChannelWeights(0.0, 0.0, 1.0)
    hits = metrics.recall_at(metrics.true_ranks(exact.scores(side, weights, {}, None, None), columns), 10) > 0
    assert np.array_equal(hits, ~trade)
    heavy = metrics.recall_at(metrics.true_ranks(exact.scores(side, ChannelWeights(4.0, 0.0, 1.0), {}, None, {}), columns), 10) > 0
    assert heavy.mean() >= hits.mean() and not heavy[~trade].all(), "the trade a mean floor would allow"
    choice = choose_route(Validation(similar, exact, hits), side, weights, {}, ("appearance",))
    chosen = ChannelWeights(choice["appearance_weight"], 0.0, 1.0)
    found = metrics.recall_at(metrics.true_ranks(exact.scores(side, chosen, {}, None, choice["factors"]), columns), 10) > 0
    assert choice["keeps_sketch_recall"] and found[hits].all()


def test_a_sign_query_weighs_the_latent_guess_less_when_the_stated_signs_contradict_it() -> None:
    """E's latent pulls up cases of the other diagnosis (the findings it guessed from the outline); the choice
    lowers the latent weight for sign queries or drops the guess from it, keeping the exact-case recall the
    sketch alone reaches."""
    similar, exact, side, diagnoses, columns, query_diagnoses = _toy(3, 3.0, unlike_own=False, guess=2.0)
    weights = ChannelWeights(0.0, 1.0, 1.0)
    hits = metrics.recall_at(metrics.true_ranks(exact.scores(side, weights, {}, None, None), columns), 10) > 0
    choice = choose_route(Validation(similar, exact, hits), side, weights, {}, ("appearance",))
    assert choice["keeps_sketch_recall"] and (choice["latent_weight"] < weights.latent or choice["latent_outline_only"])
    kept = dict(choice, latent_weight=weights.latent, latent_outline_only=False)  # the same choice with the sketch's latent

    def precision(c: dict) -> float:
        chosen = ChannelWeights(c["appearance_weight"], c["latent_weight"], 1.0)
        return float(metrics.precision_at(similar.scores(side, chosen, {}, None, c["factors"], c["latent_outline_only"]),
                                          query_diagnoses, diagnoses).mean())
    assert precision(choice) > precision(kept)


def test_a_sign_query_keeps_the_latent_outline_without_the_guessed_findings_when_recall_needs_it() -> None:
    """Shape alone misses some own cases, the latent finds them (its outline part) but also pulls up the other
    diagnosis (its guess along the signs' directions): the choice keeps the latent weight with the guess
    projected out, so recall holds and the guess no longer costs precision."""
    similar, exact, side, diagnoses, columns, query_diagnoses = _toy(3, 0.2, unlike_own=False, guess=2.0, outline=3.0)
    weights = ChannelWeights(0.0, 1.0, 1.0)
    hits = metrics.recall_at(metrics.true_ranks(exact.scores(side, weights, {}, None, None), columns), 10) > 0
    without = ChannelWeights(0.0, 0.0, 1.0)
    assert hits.all() and metrics.recall_at(metrics.true_ranks(exact.scores(side, without, {}, None, None), columns), 10).mean() < 1
    choice = choose_route(Validation(similar, exact, hits), side, weights, {}, ("appearance",))
    assert choice["keeps_sketch_recall"] and choice["latent_weight"] > 0 and choice["latent_outline_only"]

    def precision(outline_only: bool) -> float:
        chosen = ChannelWeights(choice["appearance_weight"], choice["latent_weight"], 1.0)
        return float(metrics.precision_at(similar.scores(side, chosen, {}, None, choice["factors"], outline_only),
                                          query_diagnoses, diagnoses).mean())
    assert precision(True) > precision(False)


class _Interacting(_Scored):
    """A toy where one sign's factor pays only once another's is set: the appearance pull grows with exudate's
    factor times erythema-absent's (tried after it in a pass)."""

    def scores(self, side, weights, scales, w_factors, appearance_factors, outline_only=False) -> np.ndarray:  # type: ignore[no-untyped-def]
        factors = appearance_factors or {}
        pull = 0.01 + 0.005 * factors.get("exudate", 0.0) * factors.get("erythema" + ABSENT_KEY, 0.0)
        return weights.shape * self.own + weights.appearance * pull * self.same


def test_the_coordinate_ascent_goes_on_until_no_single_factor_gains(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import retrieval.sign_evaluation as sign_evaluation

    similar, exact, side, diagnoses, columns, query_diagnoses = _toy(5, 3.0, unlike_own=False)
    similar, exact = (_Interacting(one.queries, one.own, one.same) for one in (similar, exact))
    weights = ChannelWeights(0.0, 0.0, 1.0)
    validation = Validation(similar, exact, np.ones(len(columns), dtype=bool))
    choice = choose_route(validation, side, weights, {}, ("appearance",))
    assert choice["factors"]["exudate"] > 1.0 and choice["absent_factors"]["erythema"] > 0.0
    monkeypatch.setattr(sign_evaluation, "ASCENT_PASSES", 1)
    once = choose_route(validation, side, weights, {}, ("appearance",))
    assert once["factors"]["exudate"] == 1.0, "one pass tried exudate before erythema-absent made it pay"
    assert choice["validation_macro_precision"] > once["validation_macro_precision"]
