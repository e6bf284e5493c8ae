"""The clinician's loop against the real server (SQLite and PostgreSQL): refine a search by marking
its hits, read each hit's percentiles and plain sentence, save a search and reopen it, list the recent
searches and prune the old ones; only the key that made a search sees it. The test that makes a new
build runs last."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import delete, select

from generation.presets import SHIPPED_BUNDLE
from indexing import store
from indexing.fused_index import build_index
from indexing.models import IndexReference, QueryLog, QueryPictures, QueryVectors, SavedSearch, utc_now
from indexing.settings import Settings, SettingsError
from retrieval.feedback import FeedbackConfig
from tests.api.conftest import Served, contour_png, run_s2m


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


def _search(client: httpx.Client, served: Served, stem: str = "000003", k: int = 8, preview: bool = False) -> dict:
    response = client.post("/v1/search", files={"sketch": ("s.png", contour_png(served.dataset, stem), "image/png")},
                           data={"k": str(k), **({"preview": "true", "refine": "false"} if preview else {})})
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
    assert refined["weights"] == refined["refinements"][1]["weights"] == asdict(FeedbackConfig().marked_weights)
    assert got[:2] == like  # the cases marked right come first, in the order they were shown
    # a second round keeps the first round's marked-away case out, and links back to the first search
    second = client.post(f"/v1/queries/{refined['query_id']}/refine", json={"unlike": [got[-1]]}).json()
    assert {ids[1], got[-1]}.isdisjoint(hit["image_id"] for hit in second["results"])
    assert [hit["image_id"] for hit in second["results"][:2]] == like  # and keeps the first round's right cases first
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


def test_recent_searches_list_only_the_keys_own_newest_first_with_their_top_three(client: httpx.Client, served: Served,
                                                                                   other_key: str) -> None:
    with served.client(other_key) as other:
        theirs = _search(other, served, "000001", k=3)["query_id"]
    first = _search(client, served, "000001", k=5)
    preview = _search(client, served, "000006", k=5, preview=True)["query_id"]
    refined = client.post(f"/v1/queries/{first['query_id']}/refine", json={"like": [first["results"][0]["image_id"]]}).json()
    listed = client.get("/v1/queries", params={"limit": 100}).json()
    ids = [item["query_id"] for item in listed]
    assert ids[:2] == [refined["query_id"], first["query_id"]]  # newest first
    assert preview not in ids and theirs not in ids  # live previews and another key's searches are not listed
    assert [item["created_at"] for item in listed] == sorted((item["created_at"] for item in listed), reverse=True)
    top = listed[1]["top"]
    assert [(hit["image_id"], hit["rank"]) for hit in top] == [(hit["image_id"], hit["rank"]) for hit in first["results"][:3]]
    assert [hit["score"] for hit in top] == pytest.approx([hit["score"] for hit in first["results"][:3]])
    assert listed[1]["sketch_url"] == first["sketch_url"] and listed[0]["sketch_url"] is None  # a refinement draws nothing
    assert listed[0]["parent_query_id"] == first["query_id"] and listed[0]["kind"] == "refine" and not listed[0]["saved"]
    assert client.get(first["sketch_url"]).headers["content-type"] == "image/png"
    reopened = client.get(f"/v1/queries/{first['query_id']}").json()  # reopening: its results and its pictures
    assert [hit["image_id"] for hit in reopened["results"]] == [hit["image_id"] for hit in first["results"]]
    assert reopened["step_urls"] == first["step_urls"] and reopened["sketch_url"] == first["sketch_url"]
    assert [item["query_id"] for item in client.get("/v1/queries", params={"limit": 1}).json()] == [refined["query_id"]]
    with served.client(other_key) as other:
        assert theirs in [item["query_id"] for item in other.get("/v1/queries").json()]
        assert first["query_id"] not in [item["query_id"] for item in other.get("/v1/queries").json()]
        _error(other.get(f"/v1/queries/{first['query_id']}"), 404)
    with served.client("admin") as admin:  # an admin key lists its own searches only
        assert admin.get("/v1/queries").json() == []
    for bad in ("0", "101", "ten"):
        assert "limit" in _error(client.get("/v1/queries", params={"limit": bad}), 422)


def _count(served: Served) -> tuple[int, int, int]:
    archive = served.archive()
    try:
        with archive.sessions() as session:
            return tuple(len(session.scalars(select(table.query_id if table is not QueryLog else table.id)).all())  # type: ignore[return-value]
                         for table in (QueryLog, QueryVectors, QueryPictures))
    finally:
        archive.close()


def test_prune_removes_searches_past_the_retention_but_keeps_saved_and_fresh_ones(client: httpx.Client, served: Served) -> None:
    old, pinned, fresh = (_search(client, served, stem, k=3)["query_id"] for stem in ("000008", "000010", "000011"))
    saved = client.post(f"/v1/queries/{pinned}/save", json={"name": "kept"}).json()
    archive = served.archive()
    try:
        with archive.sessions.begin() as session:  # the clock: stored times 31 days back
            for entry in session.scalars(select(QueryLog).where(QueryLog.uid.in_([old, pinned]))):
                entry.created_at = utc_now() - timedelta(days=31)
    finally:
        archive.close()
    before = _count(served)
    refused = run_s2m(served.settings.archive, "queries", "prune", "--max-age-days", "0")
    assert refused.returncode == 2 and "--max-age-days" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    with pytest.raises(SettingsError, match="S2M_QUERIES_MAX_AGE_DAYS"):  # the setting itself (exit 2 like every SettingsError)
        Settings.from_env({"S2M_QUERIES_MAX_AGE_DAYS": "a month"})
    assert _count(served) == before  # nothing changed
    pruned = run_s2m(served.settings.archive, "queries", "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "removed 1 searches older than 30 days" in pruned.stdout
    assert _count(served) == (before[0] - 1, before[1] - 1, before[2] - 1)  # its vectors and pictures went with it
    _error(client.get(f"/v1/queries/{old}"), 404)
    assert old not in [item["query_id"] for item in client.get("/v1/queries", params={"limit": 100}).json()]
    for kept in (pinned, fresh):
        assert client.get(f"/v1/queries/{kept}").status_code == 200
    assert client.get(f"/v1/saved/{saved['saved_id']}").status_code == 200  # a saved search is kept until forgotten


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
