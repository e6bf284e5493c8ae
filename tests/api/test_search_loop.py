"""The clinician's loop against the real server (SQLite and PostgreSQL): refine a search by marking
its hits, read each hit's percentiles and plain sentence, save a search and reopen it; only the key
that made a search sees it. The test that makes a new build runs last."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import delete, select

from generation.presets import SHIPPED_BUNDLE
from indexing import store
from indexing.fused_index import build_index
from indexing.models import IndexReference, QueryLog, QueryVectors, SavedSearch
from retrieval.feedback import FeedbackConfig
from tests.api.conftest import Served, contour_png


@pytest.fixture(scope="module")
def other_key(served: Served) -> str:
    archive = served.archive()
    try:
        with archive.sessions.begin() as session:
            return store.create_api_key(session, "another clinician", ["search"])[1]
    finally:
        archive.close()


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with served.client() as opened:
        yield opened


def _search(client: httpx.Client, served: Served, stem: str = "000003", k: int = 8) -> dict:
    response = client.post("/v1/search", files={"sketch": ("s.png", contour_png(served.dataset, stem), "image/png")},
                           data={"k": str(k)})
    assert response.status_code == 200, response.text
    return response.json()


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    return body["error"]


def test_a_refine_moves_the_search_drops_the_marked_away_and_is_kept_linked_to_its_parent(client: httpx.Client, served: Served) -> None:
    first = _search(client, served)
    ids = [hit["image_id"] for hit in first["results"]]
    like, unlike = [ids[0], ids[3]], [ids[1]]
    response = client.post(f"/v1/queries/{first['query_id']}/refine", json={"like": like, "unlike": unlike})
    assert response.status_code == 200, response.text
    refined = response.json()
    got = [hit["image_id"] for hit in refined["results"]]
    assert ids[1] not in got and len(got) == len(ids) and refined["k"] == first["k"]
    assert refined["parent_query_id"] == first["query_id"] and refined["query_id"] != first["query_id"]
    assert [step["query_id"] for step in refined["refinements"]] == [first["query_id"], refined["query_id"]]
    assert refined["refinements"][1]["like"] == sorted(like) and refined["refinements"][1]["unlike"] == unlike
    assert refined["weights"] == refined["refinements"][1]["weights"]
    # each channel's weight moved by how well it ordered the marked hits in the first search
    scores = {hit["image_id"]: hit["channels"] for hit in first["results"]}
    for name, weight in first["weights"].items():
        agreement = sum((scores[r][name] > scores[w][name]) + 0.5 * (scores[r][name] == scores[w][name]) for r in like for w in unlike) / 2
        assert refined["weights"][name] == pytest.approx(max(0.0, weight + FeedbackConfig().reweight * (2 * agreement - 1)))
    # a second round keeps the first round's marked-away case out, and links back to the first search
    second = client.post(f"/v1/queries/{refined['query_id']}/refine", json={"unlike": [got[-1]]}).json()
    assert {ids[1], got[-1]}.isdisjoint(hit["image_id"] for hit in second["results"])
    assert [step["query_id"] for step in second["refinements"]] == [first["query_id"], refined["query_id"], second["query_id"]]
    archive = served.archive()
    try:
        with archive.sessions() as session:
            rows = {row.uid: row for row in session.scalars(select(QueryLog).where(QueryLog.uid.in_([refined["query_id"], second["query_id"]])))}
            assert rows[refined["query_id"]].parent_uid == first["query_id"] and rows[refined["query_id"]].kind == "refine"
            assert rows[second["query_id"]].feedback["exclude"] == sorted({ids[1], got[-1]})
            assert len({row.api_key_id for row in rows.values()}) == 1
            assert session.get(QueryVectors, rows[second["query_id"]].id) is not None
    finally:
        archive.close()


def test_bad_marks_and_another_keys_query_are_refused_with_one_sentence(client: httpx.Client, served: Served, other_key: str) -> None:
    first = _search(client, served, "000005", k=5)
    uid, ids = first["query_id"], [hit["image_id"] for hit in first["results"]]
    stranger = max(ids) + 1000
    assert str(stranger) in _error(client.post(f"/v1/queries/{uid}/refine", json={"like": [ids[0], stranger]}), 422)
    assert "at least one" in _error(client.post(f"/v1/queries/{uid}/refine", json={}), 422)
    assert str(ids[0]) in _error(client.post(f"/v1/queries/{uid}/refine", json={"like": [ids[0]], "unlike": [ids[0]]}), 422)
    _error(client.post("/v1/queries/nosuchquery/refine", json={"like": [ids[0]]}), 404)
    with served.client(other_key) as other:
        _error(other.post(f"/v1/queries/{uid}/refine", json={"like": [ids[0]]}), 404)
        _error(other.post(f"/v1/queries/{uid}/save", json={"name": "theirs"}), 404)


def test_every_hit_carries_percentiles_and_a_plain_sentence(client: httpx.Client, served: Served) -> None:
    body = _search(client, served, "000007", k=10)
    assert body["percentiles_note"] is None
    hits = body["results"]
    for hit in hits:
        assert set(hit["percentiles"]) == {"fused", "appearance", "latent", "shape"}
        assert all(0.0 <= value <= 100.0 for value in hit["percentiles"].values())
        assert hit["similarity"] and ("outline" in hit["similarity"])
    # the fused percentile follows the fused score, the ranking's order
    fused = [hit["percentiles"]["fused"] for hit in hits]
    assert fused == sorted(fused, reverse=True) and fused[0] > fused[-1]
    # the drawn case itself is closer in outline than nearly every archive pair
    assert hits[0]["percentiles"]["shape"] >= 90 and hits[0]["similarity"].startswith("closer in outline")


def test_a_saved_search_is_listed_reopened_and_forgotten_by_its_own_key_only(client: httpx.Client, served: Served, other_key: str) -> None:
    first = _search(client, served, "000009", k=6)
    response = client.post(f"/v1/queries/{first['query_id']}/save", json={"name": "  tonsils   left "})
    assert response.status_code == 201, response.text
    saved = response.json()
    assert saved["name"] == "tonsils left" and saved["query_id"] == first["query_id"]
    assert saved["top_ids"] == [hit["image_id"] for hit in first["results"][:3]]
    assert saved["saved_id"] in [item["saved_id"] for item in client.get("/v1/saved").json()]
    reopened = client.get(f"/v1/saved/{saved['saved_id']}").json()
    assert [hit["image_id"] for hit in reopened["results"]] == [hit["image_id"] for hit in first["results"]]
    assert reopened["note"] is None and reopened["saved"]["saved_id"] == saved["saved_id"]
    assert reopened["query_id"] != first["query_id"]  # a new query, which can itself be refined
    with served.client(other_key) as other:
        assert other.get("/v1/saved").json() == []
        _error(other.get(f"/v1/saved/{saved['saved_id']}"), 404)
        _error(other.delete(f"/v1/saved/{saved['saved_id']}"), 404)
    assert "name" in _error(client.post(f"/v1/queries/{first['query_id']}/save", json={"name": ""}), 422)
    assert client.delete(f"/v1/saved/{saved['saved_id']}").status_code == 204
    _error(client.get(f"/v1/saved/{saved['saved_id']}"), 404)
    archive = served.archive()
    try:
        with archive.sessions() as session:
            assert session.get(SavedSearch, saved["saved_id"]) is None
    finally:
        archive.close()


def test_a_search_of_another_bundle_reopens_with_its_hits_as_saved_and_cannot_be_refined(client: httpx.Client, served: Served) -> None:
    first = _search(client, served, "000004", k=5)
    saved = client.post(f"/v1/queries/{first['query_id']}/save", json={"name": "old bundle"}).json()
    archive = served.archive()
    try:
        with archive.sessions.begin() as session:
            entry = session.scalars(select(QueryLog).where(QueryLog.uid == first["query_id"])).one()
            session.get(QueryVectors, entry.id).model_version = "an-older-bundle"
    finally:
        archive.close()
    reopened = client.get(f"/v1/saved/{saved['saved_id']}").json()
    assert reopened["query_id"] == first["query_id"] and "as they were saved" in reopened["note"]
    assert [hit["image_id"] for hit in reopened["results"]] == [hit["image_id"] for hit in first["results"]]
    assert "search again" in _error(client.post(f"/v1/queries/{first['query_id']}/refine",
                                                json={"like": [first["results"][0]["image_id"]]}), 409)


def test_after_a_new_build_a_reopened_search_says_so_and_a_build_without_reference_has_no_percentiles(
        client: httpx.Client, served: Served) -> None:
    """Runs last: it activates a new build, then takes away that build's reference distribution (an old build's state)."""
    first = _search(client, served, "000002", k=5)
    saved = client.post(f"/v1/queries/{first['query_id']}/save", json={"name": "before"}).json()
    archive = served.archive()
    try:
        from generation.bundle import Bundle

        new = build_index(archive, Bundle.open(SHIPPED_BUNDLE).version)
        with archive.sessions.begin() as session:
            assert session.get(IndexReference, new.id) is not None  # every build keeps one
            session.execute(delete(IndexReference).where(IndexReference.build_id == new.id))
    finally:
        archive.close()
    reopened = client.get(f"/v1/saved/{saved['saved_id']}").json()
    assert reopened["build_id"] == new.id and "changed" in reopened["note"]
    assert [hit["image_id"] for hit in reopened["results"]] == [hit["image_id"] for hit in first["results"]]
    assert all(hit["percentiles"] is None and hit["similarity"] is None for hit in reopened["results"])
    assert "no reference distribution" in reopened["percentiles_note"]
