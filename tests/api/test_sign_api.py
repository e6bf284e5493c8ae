"""`POST /v1/search` and `/v1/generate` with clinical signs (issue 38), on a real server whose bundle has them."""

from __future__ import annotations

from dataclasses import asdict

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexing.settings import Settings
from retrieval.feedback import FeedbackConfig
from tests.api.conftest import Served, contour_png, keys, running, service_settings
from tests.retrieval.conftest import signs_bundle  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def served_signs(served_archive: Settings, phantom_archive: Path, signs_bundle: Path,  # noqa: F811 (fixture)
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = service_settings(served_archive, tmp_path_factory.mktemp("signs-service"), bundle=signs_bundle)
    search, admin = keys(served_archive)
    with running(settings) as url:
        yield Served(url, settings, search, admin, phantom_archive, phantom_archive.parent / "extra")


def _upload(served: Served) -> dict:
    return {"sketch": ("s.png", contour_png(served.dataset, "000003"), "image/png")}


def test_search_applies_signs_from_a_multipart_field_and_from_json(served_signs: Served) -> None:
    with served_signs.client() as client:
        plain = client.post("/v1/search", files=_upload(served_signs), data={"k": "5"})
        signed = client.post("/v1/search", files=_upload(served_signs),
                             data={"k": "5", "signs": json.dumps({"exudate": 1, "erythema": 0.5})})
        strokes = [{"points": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8], [0.2, 0.2]], "width": 0.01}]
        as_json = client.post("/v1/search", json={"strokes": strokes, "k": 5, "signs": {"cobblestoning": 0.25}})
        generated = [client.get(body.json()["generated_image_url"]).content for body in (plain, signed)]
    assert plain.status_code == signed.status_code == as_json.status_code == 200, (signed.text, as_json.text)
    assert plain.json()["signs"] == []
    applied = {entry["sign"]: entry for entry in signed.json()["signs"]}
    assert set(applied) == {"exudate", "erythema"} and applied["erythema"]["strength"] == 0.5
    assert applied["exudate"]["w_shift"] > 0 and applied["exudate"]["appearance_shift"] > 0
    assert [entry["sign"] for entry in as_json.json()["signs"]] == ["cobblestoning"]
    assert generated[0] != generated[1], "the W edit changes the generated picture"
    scores = [[hit["channels"]["appearance"] for hit in body.json()["results"]] for body in (plain, signed)]
    assert scores[0] != scores[1]


@pytest.mark.parametrize("signs, message", [
    ({"pus": 1}, "unknown sign 'pus'; known signs: exudate, erythema"),
    ({"exudate": 3}, "from -1 (absent) to 1"),
    ({"exudate": "much"}, "signs.exudate"),
])
def test_bad_signs_are_422_naming_the_known_signs(served_signs: Served, signs: dict, message: str) -> None:
    with served_signs.client() as client:
        response = client.post("/v1/search", files=_upload(served_signs), data={"signs": json.dumps(signs)})
        generate = client.post("/v1/generate", json={"strokes": [{"points": [[0.2, 0.2], [0.8, 0.8]]}], "signs": signs})
    for answer in (response, generate):
        assert answer.status_code == 422 and message in answer.json()["error"], answer.text
    with served_signs.client() as client:
        not_json = client.post("/v1/search", files=_upload(served_signs), data={"signs": "exudate=1"})
    assert not_json.status_code == 422 and "JSON text" in not_json.json()["error"]


def test_generate_draws_the_signs_and_says_which_it_applied(served_signs: Served) -> None:
    with served_signs.client() as client:
        plain = client.post("/v1/generate", files=_upload(served_signs))
        signed = client.post("/v1/generate", files=_upload(served_signs), data={"signs": json.dumps({"exudate": 1})})
        steps = client.post("/v1/generate?steps=true", files=_upload(served_signs), data={"signs": json.dumps({"exudate": 1})})
    assert plain.status_code == signed.status_code == steps.status_code == 200
    assert json.loads(plain.headers["X-Signs-Applied"]) == []
    (applied,) = json.loads(signed.headers["X-Signs-Applied"])
    assert applied["sign"] == "exudate" and applied["w_shift"] > 0 and applied["appearance_shift"] == 0
    assert signed.content != plain.content and signed.headers["content-type"] == "image/png"
    assert steps.json()["signs"] == [applied]


def test_a_sign_search_keeps_its_signs_when_reopened_refined_and_saved(served_signs: Served) -> None:
    """The query log keeps a query's signs (names, strengths, routes): reading the query back gives them,
    a refinement ranks with the sign query's appearance weight and logs the same signs, and so does a reopening."""
    asked = {"exudate": 1.0, "erythema": 0.5}
    with served_signs.client() as client:
        plain = client.post("/v1/search", files=_upload(served_signs), data={"k": "8"}).json()
        first = client.post("/v1/search", files=_upload(served_signs), data={"k": "8", "signs": json.dumps(asked)}).json()
        logged = client.get(f"/v1/queries/{first['query_id']}").json()
        ids = [hit["image_id"] for hit in first["results"]]
        refined = client.post(f"/v1/queries/{first['query_id']}/refine", json={"like": ids[2:4], "unlike": [ids[0]]}).json()
        refined_logged = client.get(f"/v1/queries/{refined['query_id']}").json()
        saved = client.post(f"/v1/queries/{refined['query_id']}/save", json={"name": "exudate"}).json()
        reopened = client.get(f"/v1/saved/{saved['saved_id']}").json()
        unliked = client.post(f"/v1/queries/{first['query_id']}/refine", json={"unlike": ids[5:6]}).json()
    kept = [{key: entry[key] for key in ("sign", "strength", "routes")} for entry in logged["signs"]]
    assert kept == [{"sign": "exudate", "strength": 1.0, "routes": ["w", "appearance"]},
                    {"sign": "erythema", "strength": 0.5, "routes": ["w", "appearance"]}]
    assert logged["signs"] == first["signs"] and plain["signs"] == []
    for later in (refined, refined_logged, reopened):
        assert later["signs"] == first["signs"], later
    # a refinement with only "not this" marks keeps the sign query's weights (the appearance channel that carries the
    # signs), not the build's; one with a case marked right ranks by the weights chosen for refined searches
    assert first["weights"]["appearance"] > plain["weights"]["appearance"]
    assert unliked["weights"] == first["weights"] and unliked["signs"] == first["signs"]
    assert refined["weights"] == asdict(FeedbackConfig().marked_weights)
    assert ids[0] not in [hit["image_id"] for hit in refined["results"]]


def test_the_signs_the_service_offers_and_a_sign_asked_as_present(served_signs: Served) -> None:
    with served_signs.client() as client:
        offered = client.get("/v1/signs").json()
        present = client.post("/v1/search", files=_upload(served_signs), data={"k": "3", "signs": json.dumps({"exudate": "present"})})
    names = [sign["name"] for sign in offered["signs"]]
    assert names[:2] == ["exudate", "erythema"] and offered["current"] and not offered["chosen_on_validation"]
    assert all(sign["min"] == -1.0 and sign["max"] == 1.0 and sign["present"] == 1.0 and sign["absent"] == -1.0 for sign in offered["signs"])
    assert present.status_code == 200 and [(s["sign"], s["strength"]) for s in present.json()["signs"]] == [("exudate", 1.0)]
