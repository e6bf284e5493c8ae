"""`POST /v1/generate` (PNG, steps, Secondary Capture), the QIDO-RS facade read by dicomweb-client,
health, readiness, metrics and the per-key rate limit, against the real server."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from indexing.settings import Settings
from tests.api.conftest import Served, contour_png, keys, running, service_settings


def test_generate_returns_png_steps_and_a_synthetic_secondary_capture(served: Served) -> None:
    files = {"sketch": ("s.png", contour_png(served.dataset, "000004"))}
    with served.client() as client:
        png = client.post("/v1/generate", files=files)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(png.content)) as picture:
            assert picture.size == (64, 64) and picture.mode == "RGB"
        steps = client.post("/v1/generate", params={"steps": "true"}, files=files).json()["steps"]
        assert len(steps) == 4 and base64.b64decode(steps[-1].split(",", 1)[1]) == png.content  # x_0 .. x_3, x_3 the image
        quick = client.post("/v1/generate", params={"steps": "true"}, files=files, data={"refine": "false"}).json()["steps"]
        assert len(quick) == 1 and quick[0] == steps[0]
        dicom = client.post("/v1/generate", params={"format": "dicom"}, files=files)
        assert dicom.status_code == 200 and dicom.headers["content-type"] == "application/dicom"
        assert client.post("/v1/generate", params={"format": "tiff"}, files=files).status_code == 422
        assert httpx.post(f"{served.url}/v1/generate", files=files).status_code == 401
        found = client.post("/v1/search", files=files, data={"k": "16"}).json()
    ds = pydicom.dcmread(io.BytesIO(dicom.content))
    assert ds.ConversionType == "SYN" and list(ds.ImageType)[0] == "DERIVED"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.Modality == "OT"
    assert ds.StudyInstanceUID not in {hit["study_uid"] for hit in found["results"]}  # a study of its own
    assert ds.PatientName == "" and ds.PatientID == ""
    assert ds.pixel_array.shape == (64, 64, 3)
    assert (ds.pixel_array == __import__("numpy").asarray(Image.open(io.BytesIO(png.content)))).all()


def test_a_dicomweb_viewer_lists_exactly_the_query_results(served: Served) -> None:
    with served.client() as client:
        found = client.post("/v1/search", files={"sketch": ("s.png", contour_png(served.dataset, "000007"))},
                            data={"k": "5"}).json()
    viewer = DICOMwebClient(url=f"{served.url}/dicomweb/results/{found['query_id']}",
                            headers={"Authorization": f"Bearer {served.search_key}"})
    studies = viewer.search_for_studies()
    assert [s["0020000D"]["Value"][0] for s in studies] == [hit["study_uid"] for hit in found["results"]]  # rank order
    assert studies[0]["00080061"]["Value"] == ["XC"] and studies[0]["00100020"]["Value"] == [found["results"][0]["patient_pseudonym"]]
    assert len(viewer.search_for_studies(limit=2)) == 2
    assert [s["0020000D"]["Value"][0] for s in viewer.search_for_studies(offset=3, fields=["StudyDate"])] == \
        [hit["study_uid"] for hit in found["results"][3:]]
    top = found["results"][0]
    series = viewer.search_for_series(study_instance_uid=top["study_uid"])
    assert [s["0020000E"]["Value"][0] for s in series] == [top["series_uid"]]
    instances = viewer.search_for_instances(study_instance_uid=top["study_uid"], series_instance_uid=top["series_uid"])
    assert [i["00080018"]["Value"][0] for i in instances] == [top["sop_uid"]]
    assert instances[0]["00081190"]["Value"][0] == top["wado_url"]
    matched = viewer.search_for_studies(search_filters={"StudyInstanceUID": found["results"][1]["study_uid"]})
    assert len(matched) == 1
    with httpx.Client(base_url=served.url) as anonymous:
        assert anonymous.get(f"/dicomweb/results/{found['query_id']}/studies").status_code == 401
    with served.client() as client:
        assert client.get("/dicomweb/results/ffffffffffffffffffffffffffffffff/studies").status_code == 404


def test_health_readiness_and_metrics(served: Served) -> None:
    with httpx.Client(base_url=served.url) as client:
        assert client.get("/healthz").json() == {"status": "alive", "checks": {}}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["checks"]["database"] == "ok"
        with served.client() as searcher:
            searcher.post("/v1/search", files={"sketch": ("s.png", contour_png(served.dataset, "000001"))})
            searcher.get("/v1/images/999999")
        text = client.get("/metrics").text
    assert 's2m_http_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 's2m_http_requests_total{method="GET",route="/v1/images/{image_id}",status="404"}' in text
    assert 's2m_search_stage_seconds_count{stage="pipeline"}' in text and "s2m_search_batch_size_bucket" in text
    assert "s2m_index_vectors 16.0" in text and "s2m_index_age_seconds" in text


@pytest.mark.parametrize("served_archive", ["sqlite"], indirect=True)
def test_the_rate_limit_answers_429_with_retry_after_per_key(served_archive: Settings, tmp_path: Path) -> None:
    settings = service_settings(served_archive, tmp_path, rate_limit_per_minute=6, rate_limit_burst=3)
    first, second = keys(served_archive)
    with running(settings) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {first}"}) as client:
            statuses = [client.get("/v1/images/example").status_code for _ in range(4)]
            limited = client.get("/v1/images/example")
        assert statuses[:3] == [200, 200, 200] and limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 10 and "rate limit" in limited.json()["error"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {second}"}) as other:
            assert other.get("/v1/images/example").status_code == 200  # another key has its own bucket


@pytest.mark.parametrize("served_archive", ["sqlite"], indirect=True)
def test_s2m_refine_steps_sets_how_many_h_steps_search_and_generate_run(served_archive: Settings, phantom_archive: Path,
                                                                         tmp_path: Path) -> None:
    search, _ = keys(served_archive)
    files = {"sketch": ("s.png", contour_png(phantom_archive, "000004"))}
    with running(service_settings(served_archive, tmp_path, refine_steps=1)) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {search}"}, timeout=60) as client:
            found = client.post("/v1/search", files=files, data={"k": "3"}).json()
            steps = client.post("/v1/generate", params={"steps": "true"}, files=files).json()["steps"]
    assert found["refined"] is True and len(found["step_urls"]) == 2 and len(steps) == 2  # x_0, x_1 (H's own T is 3)


@pytest.mark.parametrize("served_archive", ["sqlite"], indirect=True)
def test_cors_allows_the_configured_origin_and_the_pad_folder_is_served_at_root(served_archive: Settings, tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>pad</title>")
    settings = service_settings(served_archive, tmp_path, cors_origins=("https://viewer.example",), web_dir=web)
    with running(settings) as url, httpx.Client(base_url=url) as client:
        preflight = client.options("/dicomweb/results/x/studies", headers={
            "Origin": "https://viewer.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Accept, Authorization"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://viewer.example"
        assert {"accept", "authorization"} <= {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
        other = client.options("/v1/search", headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers
        assert client.get("/").text.startswith("<!doctype html>")  # the sketch pad's folder
        assert client.get("/healthz").status_code == 200  # routes still win over the mount
        assert client.get("/openapi.json").json()["paths"]["/v1/search"]["post"]["requestBody"]["content"].keys() >= {
            "multipart/form-data", "application/json"}


def test_an_archive_without_an_index_answers_503_to_searches_and_200_to_generate(tmp_path: Path) -> None:
    from indexing import store
    from indexing.archive import Archive
    from indexing.db import make_engine, upgrade
    from tests.indexing.conftest import TEST_KEY

    archive_settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", pseudonym_key=TEST_KEY)
    engine = make_engine(archive_settings.database_url, create=True)
    upgrade(engine)
    engine.dispose()
    archive = Archive.open(archive_settings)
    with archive.sessions.begin() as session:
        _, token = store.create_api_key(session, "viewer", ["search"])
    archive.close()
    with running(service_settings(archive_settings, tmp_path)) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            searched = client.post("/v1/search", files={"sketch": ("s.png", contour_png_of_any())})
            assert searched.status_code == 503 and "s2m index build" in searched.json()["error"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["database"] == "ok"
            assert ready.json()["checks"]["models"] == "ok" and ready.json()["checks"]["index"].startswith("unavailable")
            assert client.get("/healthz").status_code == 200 and client.get("/v1/images/1").status_code == 404
            generated = client.post("/v1/generate", files={"sketch": ("s.png", contour_png_of_any())})
            assert generated.status_code == 200 and generated.headers["content-type"] == "image/png"
            picture = Image.open(io.BytesIO(generated.content))
            assert picture.size == (64, 64) and len(np.unique(np.asarray(picture.convert("L")))) > 8, "a picture, not a blank"


def contour_png_of_any() -> bytes:
    """A plain ring drawing (any valid sketch will do where no model is reached, or for a generated picture)."""
    import cv2

    canvas = np.full((128, 128), 255, np.uint8)
    cv2.circle(canvas, (64, 64), 40, 0, 2)
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue()
