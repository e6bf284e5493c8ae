"""`POST /v1/search`, the images routes and past queries against the real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from formats.sketch import CanonicalSketch
from indexing.models import AccessLog, QueryLog
from indexing.models import Image as ImageRow
from indexing.settings import Settings
from tests.api.conftest import Served, contour_png, service_settings


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _case_ids(served: Served) -> dict[int, str]:
    archive = served.archive()
    try:
        with archive.sessions() as session:
            return {row.id: row.case_ref for row in session.scalars(select(ImageRow))}
    finally:
        archive.close()


def _strokes(served: Served, stem: str) -> list[dict]:
    """The phantom's mask outlines as pen strokes (polylines in normalised coordinates)."""
    mask = np.asarray(Image.open(served.dataset / "masks" / f"{stem}.png"))
    side = mask.shape[0]
    strokes = []
    for instance in np.unique(mask[mask > 0]):
        contours, _ = cv2.findContours((mask == instance).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for contour in contours:
            points = [[float(x) / (side - 1), float(y) / (side - 1)] for x, y in contour[:, 0, :]]
            strokes.append({"points": points + points[:1], "width": 0.008})
    return strokes


def test_a_sketch_upload_finds_its_own_case_with_scores_uids_urls_and_timings(served: Served) -> None:
    cases = _case_ids(served)
    with served.client() as client:
        response = client.post("/v1/search", files={"sketch": ("s.png", contour_png(served.dataset, "000003"), "image/png")},
                               data={"k": "5"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["results"]) == 5 and body["k"] == 5 and body["refined"] is True
        top = body["results"][0]
        assert top["rank"] == 1 and cases[top["image_id"]].endswith("-000003")
        assert set(top["channels"]) == {"appearance", "latent", "shape"}
        assert [hit["score"] for hit in body["results"]] == sorted((hit["score"] for hit in body["results"]), reverse=True)
        assert top["study_uid"] and top["series_uid"] and top["sop_uid"] and top["patient_pseudonym"] and top["study_date"]
        assert top["viewer_url"] == f"/viewer?StudyInstanceUIDs={top['study_uid']}"
        assert top["wado_url"].endswith(f"/studies/{top['study_uid']}/series/{top['series_uid']}/instances/{top['sop_uid']}")
        assert set(body["timings_ms"]) >= {"sketch", "pipeline", "embed", "faiss", "rerank", "hydrate"}
        steps = [client.get(url) for url in body["step_urls"]]
        assert len(steps) == 4 and all(s.status_code == 200 and s.content.startswith(b"\x89PNG") for s in steps)  # x_0 .. x_3
        generated = client.get(body["generated_image_url"])
        assert generated.content == steps[-1].content
        with Image.open(io.BytesIO(generated.content)) as picture:
            assert picture.size == (64, 64) and picture.mode == "RGB"
        past = client.get(f"/v1/queries/{body['query_id']}").json()
        assert [hit["image_id"] for hit in past["results"]] == [hit["image_id"] for hit in body["results"]]
        assert past["results"][0]["score"] == top["score"] and past["kind"] == "sketch"
    archive = served.archive()
    try:
        with archive.sessions() as session:
            entry = session.scalars(select(QueryLog).where(QueryLog.uid == body["query_id"])).one()
    finally:
        archive.close()
    assert entry.client == "127.0.0.1" and entry.k == 5 and entry.result_ids == [hit["image_id"] for hit in body["results"]]
    assert entry.latency_ms > 0 and entry.build_id == body["build_id"] and "pipeline" in entry.timings_ms
    logged = repr(entry.__dict__)
    assert top["patient_pseudonym"] not in logged  # no patient identifier, not even the pseudonym


def test_json_strokes_are_rasterised_and_refine_false_is_x0_only(served: Served) -> None:
    cases = _case_ids(served)
    with served.client() as client:
        response = client.post("/v1/search", json={"strokes": _strokes(served, "000009"), "k": 3, "refine": False})
        assert response.status_code == 200, response.text
        body = response.json()
        assert cases[body["results"][0]["image_id"]].endswith("-000009")
        assert body["refined"] is False and len(body["step_urls"]) == 1  # x_0 only: no H step ran
        filtered = client.post("/v1/search", json={"strokes": _strokes(served, "000009"), "k": 16,
                                                  "filters": {"diagnosis": ["normal"]}}).json()
    archive = served.archive()
    try:
        with archive.sessions() as session:
            normal = {row.id for row in session.scalars(select(ImageRow).where(ImageRow.diagnosis == "normal"))}
    finally:
        archive.close()
    assert {hit["image_id"] for hit in filtered["results"]} == normal
    assert all(hit["diagnosis"] == "normal" for hit in filtered["results"])


def test_images_routes_serve_metadata_pixels_sketch_example_and_similar(served: Served) -> None:
    cases = _case_ids(served)
    image_id = next(i for i, case in cases.items() if case.endswith("-000005"))
    with served.client() as client:
        meta = client.get(f"/v1/images/{image_id}").json()
        assert meta["image_id"] == image_id and meta["case_id"] == cases[image_id] and meta["sop_uid"]
        thumbnail = client.get(meta["thumbnail_url"])
        with Image.open(io.BytesIO(thumbnail.content)) as picture:
            assert thumbnail.headers["content-type"] == "image/png" and max(picture.size) <= 128
        stored = client.get(meta["image_url"])
        with Image.open(io.BytesIO(stored.content)) as picture:
            assert picture.size == (meta["width"], meta["height"])
        sketch = client.get(meta["sketch_url"])
        with Image.open(io.BytesIO(sketch.content)) as picture:
            pixels = np.asarray(picture.convert("L"))
            assert pixels.shape == (64, 64) and (pixels < 128).any()  # S found outlines
        example = client.get("/v1/images/example").json()
        assert client.get(f"/v1/images/{example['image_id']}").json()["diagnosis"] == "normal"
        similar = client.post(f"/v1/images/{image_id}/similar", json={"k": 4})
        assert similar.status_code == 200, similar.text
        body = similar.json()
        assert len(body["results"]) == 4 and image_id not in {hit["image_id"] for hit in body["results"]}
        assert body["generated_image_url"] is None and set(body["results"][0]["channels"]) == {"appearance", "latent", "shape"}
        default = client.post(f"/v1/images/{image_id}/similar").json()
        assert len(default["results"]) == 10
        only_normal = client.post(f"/v1/images/{image_id}/similar", json={"k": 16, "filters": {"diagnosis": ["normal"]}}).json()
        assert {hit["diagnosis"] for hit in only_normal["results"]} == {"normal"}
        assert client.get(f"/v1/queries/{body['query_id']}").json()["kind"] == "example"
    archive = served.archive()
    try:
        with archive.sessions() as session:
            actions = {row.action for row in session.scalars(select(AccessLog).where(AccessLog.image_id == image_id))}
    finally:
        archive.close()
    assert {"metadata", "thumbnail", "file", "sketch"} <= actions


def test_every_error_is_one_json_sentence_with_its_status(served: Served) -> None:
    sketch = contour_png(served.dataset, "000001")
    blank = _png(np.full((128, 128), 255, np.uint8))
    all_ink = _png(np.zeros((128, 128), np.uint8))
    gif = io.BytesIO()
    Image.new("L", (32, 32), 255).save(gif, format="GIF")
    cases = [
        (None, "post", "/v1/search", {"files": {"sketch": ("s.png", sketch)}}, 401),
        ("s2m_abc_def", "post", "/v1/search", {"files": {"sketch": ("s.png", sketch)}}, 401),
        ("search", "get", "/v1/images/1", {"headers": {"Authorization": "Basic dXNlcjpwYXNz"}}, 401),
        ("search", "post", "/v1/index/refresh", {}, 403),
        ("search", "post", "/v1/search", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415),
        ("search", "post", "/v1/search", {"files": {"sketch": ("s.gif", gif.getvalue(), "image/png")}}, 415),
        ("search", "post", "/v1/search", {"files": {"sketch": ("s.png", b"\x89PNG\r\n\x1a\nbroken")}}, 422),
        ("search", "post", "/v1/search", {"files": {"sketch": ("s.png", blank)}}, 422),
        ("search", "post", "/v1/search", {"files": {"sketch": ("s.png", all_ink)}}, 422),
        ("search", "post", "/v1/search", {"files": {"sketch": ("s.png", sketch)}, "data": {"k": "0"}}, 422),
        ("search", "post", "/v1/search", {"files": {"sketch": ("s.png", sketch)}, "data": {"k": "101"}}, 422),
        ("search", "post", "/v1/search", {"data": {"k": "3"}}, 415),  # a form without a file
        ("search", "post", "/v1/search", {"files": {"other": ("o.txt", b"x")}, "data": {"k": "3"}}, 422),
        ("search", "post", "/v1/search", {"json": {"strokes": [{"points": [[0.5, 1.5]], "width": 0.01}]}}, 422),
        ("search", "post", "/v1/search", {"json": {"strokes": []}}, 422),
        ("search", "get", "/v1/images/999999", {}, 404),
        ("search", "get", "/v1/images/999999/thumbnail", {}, 404),
        ("search", "post", "/v1/images/999999/similar", {}, 404),
        ("search", "get", "/v1/queries/0123456789abcdef", {}, 404),
        ("search", "post", "/v1/search", {"content": b"x" * (5 * 1024 * 1024 + 1), "headers": {"content-type": "application/json"}}, 413),
    ]
    for key, method, path, kwargs, status in cases:
        with served.client(key) as client:
            response = getattr(client, method)(path, **kwargs)
        assert response.status_code == status, (path, status, response.text)
        body = response.json()
        assert list(body) == ["error"] and body["error"] and "\n" not in body["error"] and "Traceback" not in body["error"], body
    with served.client() as client:
        streamed = client.post("/v1/search", content=(b"x" * 65536 for _ in range(100)), headers={"content-type": "application/json"})
    assert streamed.status_code == 413  # no Content-Length: cut off while streaming


@pytest.mark.parametrize("served_archive", ["sqlite"], indirect=True)
def test_the_service_opens_its_bundle_once_and_reads_each_network_file_at_most_once(
        served_archive: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import generation.bundle as bundle_module
    from api.service import Service

    opened: list[Path] = []
    reads: list[str] = []
    real_open, real_load = bundle_module.Bundle.open.__func__, bundle_module.load_file
    monkeypatch.setattr(bundle_module.Bundle, "open", classmethod(lambda cls, root: opened.append(root) or real_open(cls, root)))
    monkeypatch.setattr(bundle_module, "load_file", lambda path, device="cpu": reads.append(Path(path).name) or real_load(path, device=device))
    service = Service(service_settings(served_archive, tmp_path))
    try:
        service.start_engine()
        assert service.engine_loaded and len(opened) == 1
        assert sorted(reads) == ["embedder.safetensors", "encoder.safetensors", "generator.safetensors", "refiner.safetensors"]
        engine = service.engine()
        assert engine.models is service.models() and engine.embedder is service.models().embedder
        assert len(service.models().pictures(CanonicalSketch.of(ring_drawing(), 64))) == 4  # x_0 .. x_3
        assert len(opened) == 1 and len(reads) == 4, "nothing is opened or read again once the service has started"
    finally:
        asyncio.run(service.stop())


def ring_drawing() -> np.ndarray:
    canvas = np.full((128, 128), 255, np.uint8)
    cv2.circle(canvas, (64, 64), 40, 0, 2)
    return canvas
