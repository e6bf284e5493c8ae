"""What the service keeps to its owner and out of its logs, against the real server (SQLite and
PostgreSQL): queries belong to the key that ran them, patient filters take pseudonyms only, ids
and routes that name nothing are the service's JSON 404/405, URLs' query strings stay out of the
access log, and an SQLite file that goes away is "not ready" (never a new empty file) until it is back."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from evaluation.bench.service import search_key
from indexing.models import AccessLog, QueryLog
from indexing.settings import Settings
from tests.api.conftest import Served, contour_png, keys, running, service_settings


def _admin_reads(served: Served, query_id: str) -> set[str]:
    archive = served.archive()
    try:
        with archive.sessions() as session:
            return set(session.scalars(select(AccessLog.action).where(AccessLog.query_uid == query_id,
                                                                      AccessLog.action.like("admin:%"))))
    finally:
        archive.close()


def test_a_query_and_all_it_made_answer_404_to_any_other_key_and_admin_reads_are_audited(served: Served) -> None:
    other = search_key(served.settings.archive)  # a second viewer
    with served.client() as owner:
        found = owner.post("/v1/search", files={"sketch": ("s.png", contour_png(served.dataset, "000002"))}, data={"k": "3"})
        assert found.status_code == 200, found.text
        body = found.json()
        similar = owner.post(f"/v1/images/{body['results'][0]['image_id']}/similar", json={"k": 3}).json()
    top = body["results"][0]
    qido = f"/dicomweb/results/{body['query_id']}"
    routes = [f"/v1/queries/{body['query_id']}", body["generated_image_url"], body["sketch_url"], body["step_urls"][0],
              f"{qido}/studies", f"{qido}/studies/{top['study_uid']}/series",
              f"{qido}/studies/{top['study_uid']}/series/{top['series_uid']}/instances", f"/v1/queries/{similar['query_id']}",
              f"/dicomweb/results/{similar['query_id']}/studies"]
    unknown = "0" * 32
    with served.client() as owner, served.client(other) as stranger, served.client("admin") as admin:
        for route in routes:
            assert owner.get(route).status_code == 200, route
            refused = stranger.get(route)
            query_id = body["query_id"] if body["query_id"] in route else similar["query_id"]
            missing = stranger.get(route.replace(query_id, unknown))
            assert refused.status_code == missing.status_code == 404, (route, refused.text)
            assert refused.json() == {"error": missing.json()["error"].replace(unknown, query_id)}  # nothing tells them apart
            assert admin.get(route).status_code == 200, route
    assert _admin_reads(served, body["query_id"]) == {"admin:query", "admin:generated", "admin:sketch", "admin:step", "admin:qido"}
    assert _admin_reads(served, similar["query_id"]) == {"admin:query", "admin:qido"}


def _query_log(served: Served) -> tuple[int, str]:
    archive = served.archive()
    try:
        with archive.sessions() as session:
            rows = list(session.scalars(select(QueryLog.filters)))
    finally:
        archive.close()
    return len(rows), repr(rows)


@pytest.mark.parametrize("typed", ["Doe^Jane 1961-04-12", "Jane Doe", "1961-04-12 Doe"])
def test_a_patient_filter_with_a_name_or_date_is_refused_and_never_kept(served: Served, typed: str) -> None:
    sketch = contour_png(served.dataset, "000004")
    before = _query_log(served)
    with served.client() as client:
        first = client.post("/v1/search", files={"sketch": ("s.png", sketch)}, data={"k": "16"}).json()["results"][0]
        pseudonym, image_id = first["patient_pseudonym"], first["image_id"]
        as_form = client.post("/v1/search", files={"sketch": ("s.png", sketch)}, data={"exclude_patient": [typed]})
        as_json = client.post(f"/v1/images/{image_id}/similar", json={"filters": {"exclude_patients": [typed]}})
        for response in (as_form, as_json):
            assert response.status_code == 422, response.text
            assert list(response.json()) == ["error"] and typed not in response.text
            assert "pseudonym" in response.json()["error"]
        kept = client.post("/v1/search", files={"sketch": ("s.png", sketch)}, data={"k": "16", "exclude_patient": [pseudonym]})
    assert kept.status_code == 200 and pseudonym not in {hit["patient_pseudonym"] for hit in kept.json()["results"]}
    count, logged = _query_log(served)
    assert count == before[0] + 2 and typed not in logged and pseudonym in logged


def test_a_patient_id_typed_into_a_filter_filters_by_its_pseudonym_and_only_that_is_kept(served: Served) -> None:
    import csv

    from indexing.ingest.metadata import pseudonymize

    with (served.dataset / "metadata.csv").open(newline="") as handle:
        raw_id = next(csv.DictReader(handle))["patient_id"]
    archive = served.settings.archive
    pseudonym = pseudonymize(archive.existing_pseudonym_key(), raw_id, archive.pseudonym_hex_chars)
    sketch = contour_png(served.dataset, "000004")
    with served.client() as client:
        every = client.post("/v1/search", files={"sketch": ("s.png", sketch)}, data={"k": "16"})
        excluded = client.post("/v1/search", files={"sketch": ("s.png", sketch)},
                               data={"k": "16", "exclude_patient": [raw_id]})
    assert excluded.status_code == 200, excluded.text
    assert pseudonym in {hit["patient_pseudonym"] for hit in every.json()["results"]}  # k = 16: the whole archive
    assert pseudonym not in {hit["patient_pseudonym"] for hit in excluded.json()["results"]}
    _, logged = _query_log(served)
    assert raw_id not in logged and pseudonym in logged


def test_ids_and_routes_that_name_nothing_answer_the_services_json(served: Served) -> None:
    with served.client() as client:
        for path in ("/v1/images/9223372036854775808", "/v1/images/18446744073709551616/thumbnail",
                     "/v1/images/99999999999999999999999/file", "/v1/images/9223372036854775807/sketch"):
            response = client.get(path)
            assert response.status_code == 404 and response.json() == {"error": f"no archive image with id {path.split('/')[3]}"}, path
        beyond = client.post("/v1/images/9223372036854775808/similar")
        assert beyond.status_code == 404 and list(beyond.json()) == ["error"]
        nowhere = client.get("/v1/nothing-here")
        wrong_method = client.delete("/v1/search")
    assert nowhere.status_code == 404 and nowhere.json() == {"error": "no such route: see /docs for the service's routes"}
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json() == {"error": "this route does not take that method: see /docs for the service's routes"}


def test_an_oversized_upload_is_refused_from_its_header(served: Served) -> None:
    from tests.formats.test_sketch import _png_of_zeros

    with served.client() as client:
        response = client.post("/v1/search", files={"sketch": ("big.png", _png_of_zeros(13000, 13000))})
    assert response.status_code == 422
    assert response.json() == {"error": "the sketch has 169000000 pixels, more than the 16777216 allowed"}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_access_log_keeps_paths_but_never_query_strings(served: Served) -> None:
    access = logging.getLogger("uvicorn.access")
    lines, level = _Lines(), access.level
    access.addHandler(lines)
    access.setLevel(logging.INFO)
    try:
        with served.client() as client:
            client.get("/dicomweb/results/ffffffffffffffffffffffffffffffff/studies", params={"PatientName": "Doe^Jane", "PatientID": "MRN-0001"})
            client.get("/v1/images/1", params={"name": "Smith"})
        deadline = time.monotonic() + 5
        while len(lines.lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        access.removeHandler(lines)
        access.setLevel(level)
    logged = "\n".join(lines.lines)
    assert "/dicomweb/results/ffffffffffffffffffffffffffffffff/studies" in logged and "/v1/images/1 " in logged, logged
    assert "?" not in logged and "Doe" not in logged and "MRN" not in logged and "Smith" not in logged


@pytest.mark.parametrize("served_archive", ["sqlite"], indirect=True)
def test_an_sqlite_file_that_goes_away_is_not_ready_makes_no_new_file_and_comes_back(served_archive: Settings, tmp_path: Path) -> None:
    database = Path(served_archive.database_url.removeprefix("sqlite:///"))
    search, _ = keys(served_archive)
    statuses: list[int] = []
    stop = threading.Event()
    with running(service_settings(served_archive, tmp_path, rate_limit_per_minute=10**6, rate_limit_burst=10**6)) as url:
        def load() -> None:  # readers all along, as a viewer's would be
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {search}"}, timeout=30) as client:
                while not stop.is_set():
                    statuses.append(client.get("/v1/images/1").status_code)

        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {search}"}, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            workers = [threading.Thread(target=load) for _ in range(4)]
            for worker in workers:
                worker.start()
            time.sleep(0.5)
            os.rename(database, database.with_name("moved-away.sqlite3"))
            try:
                time.sleep(1.0)
                gone = client.get("/v1/images/1")
                not_ready = client.get("/readyz")
                assert not database.exists(), "the service made a new database file"
                assert gone.status_code == 503 and list(gone.json()) == ["error"], gone.text
                assert not_ready.status_code == 503 and not_ready.json()["checks"]["database"] == "unavailable"
            finally:
                os.rename(database.with_name("moved-away.sqlite3"), database)
            time.sleep(0.5)
            back = client.get("/v1/images/1")
            ready = client.get("/readyz")
            parts = [p for p in database.parent.glob(database.name + "*") if p.is_file()]  # with its -wal and -shm
            for part in parts:
                os.rename(part, part.with_name("away-" + part.name))
            try:
                sqlite3.connect(database).execute("CREATE TABLE other (x)").connection.close()  # another database in its place
                replaced = client.get("/v1/images/1")
                replaced_ready = client.get("/readyz")
            finally:
                for part in database.parent.glob(database.name + "*"):
                    part.unlink()
                for part in parts:
                    os.rename(part.with_name("away-" + part.name), part)
            time.sleep(0.5)
            again = client.get("/v1/images/1")
            stop.set()
            for worker in workers:
                worker.join()
    assert back.status_code == 200, back.text
    assert ready.status_code == 200
    assert replaced.status_code == 503 and replaced_ready.status_code == 503, replaced.text
    assert again.status_code == 200, again.text
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses  # never a 500, never a text body


@pytest.mark.parametrize("typed", ["patient=Jane Doe", "exclude-patient=Doe^Jane 1961-04-12"])
def test_s2m_search_refuses_a_patient_filter_that_is_not_a_pseudonym(tmp_path: Path, typed: str) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from api.cli import app
    from tests.indexing.archive_faults import one_line_error

    sketch = tmp_path / "s.png"
    Image.new("L", (64, 64), 255).save(sketch)
    result = CliRunner().invoke(app, ["search", str(sketch), "--filter", typed], env={"S2M_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 2
    line = one_line_error(result.output)
    assert "takes patient pseudonyms (16 lowercase hex characters" in line and typed.split("=")[1] not in line
    assert not (tmp_path / "data").exists()  # refused before anything was opened


def test_s2m_search_turns_a_typed_patient_id_into_its_pseudonym() -> None:
    from api.cli.search import parse_filters
    from indexing.ingest.metadata import pseudonymize
    from indexing.settings import Settings

    settings = Settings.from_env({"S2M_PSEUDONYM_KEY": "k" * 64})
    parsed = parse_filters(["patient=MRN-0001", "exclude-patient=" + "0" * 16], settings)
    assert parsed.patients == (pseudonymize(settings.pseudonym_key, "MRN-0001", 16),)
    assert parsed.exclude_patients == ("0" * 16,) and "MRN-0001" not in repr(parsed)


def test_a_service_refresh_while_an_index_build_runs_is_409(served: Served) -> None:
    from indexing.locks import index_build_lock

    archive = served.archive()
    try:
        with index_build_lock(archive.engine, archive.settings.data_dir), served.client("admin", timeout=300) as admin:
            refused = admin.post("/v1/index/refresh")
    finally:
        archive.close()
    assert refused.status_code == 409
    assert refused.json() == {"error": "another `s2m index build` or `s2m index refresh` is running on this archive: "
                                       "wait for it to finish, then run this again"}
