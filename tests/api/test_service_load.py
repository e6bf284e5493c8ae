"""The service under concurrent load, through an index refresh, and through a database outage."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from sqlalchemy import func, select, text

from indexing.db import make_engine
from indexing.ingest.run import ingest_path
from indexing.models import Image as ImageRow
from indexing.models import QueryLog
from tests.api.conftest import Served, contour_png

STEMS = [f"{i:06d}" for i in range(16)]


def _case_of(served: Served) -> dict[int, str]:
    archive = served.archive()
    try:
        with archive.sessions() as session:
            return dict(session.execute(select(ImageRow.id, ImageRow.case_ref)).all())
    finally:
        archive.close()


def test_32_concurrent_searches_are_batched_all_correct_and_all_logged(served: Served) -> None:
    sketches = {stem: contour_png(served.dataset, stem) for stem in STEMS}

    async def search_all() -> list[tuple[str, httpx.Response]]:
        headers = {"Authorization": f"Bearer {served.search_key}"}
        async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=300) as client:
            async def one(stem: str) -> tuple[str, httpx.Response]:
                return stem, await client.post("/v1/search", files={"sketch": ("s.png", sketches[stem])}, data={"k": "3"})
            return await asyncio.gather(*(one(stem) for stem in STEMS * 2))

    with httpx.Client(base_url=served.url) as client:
        batches_before = _batch_count(client.get("/metrics").text)
    answers = asyncio.run(search_all())
    cases = _case_of(served)
    assert all(response.status_code == 200 for _, response in answers), [r.text for _, r in answers if r.status_code != 200][:1]
    for stem, response in answers:
        assert cases[response.json()["results"][0]["image_id"]].endswith(f"-{stem}")
    with httpx.Client(base_url=served.url) as client:
        batches = _batch_count(client.get("/metrics").text) - batches_before
    assert batches < 32  # requests that arrived together ran as shared batches
    uids = {response.json()["query_id"] for _, response in answers}
    archive = served.archive()
    try:
        with archive.sessions() as session:
            logged = dict(session.execute(select(QueryLog.uid, QueryLog.result_ids).where(QueryLog.uid.in_(uids))).all())
    finally:
        archive.close()
    assert set(logged) == uids
    assert all(logged[r.json()["query_id"]] == [hit["image_id"] for hit in r.json()["results"]] for _, r in answers)


def _batch_count(metrics: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith("s2m_search_batch_size_count"))
    return float(line.split()[-1])


def test_a_refresh_activates_a_new_build_while_searches_keep_answering(served: Served) -> None:
    archive = served.archive()
    try:
        ingest_path(archive, served.extra, None, None, progress=False)
    finally:
        archive.close()
    statuses: list[int] = []
    stop = threading.Event()

    def search_meanwhile() -> None:
        with served.client() as client:
            while not stop.is_set():
                statuses.append(client.post("/v1/search", files={"sketch": ("s.png", contour_png(served.dataset, "000002"))},
                                            data={"k": "2", "refine": "false"}).status_code)

    searcher = threading.Thread(target=search_meanwhile)
    searcher.start()
    try:
        with served.client("admin", timeout=300) as admin:
            refreshed = admin.post("/v1/index/refresh")
    finally:
        stop.set()
        searcher.join()
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["added"] == 4 and statuses and set(statuses) == {200}
    with served.client() as client:
        state = client.get("/v1/index").json()
        assert state["serving_build_id"] == state["build_id"] == refreshed.json()["build_id"]
        assert state["vectors"] == 20 and state["not_indexed"] == 0
        found = client.post("/v1/search", files={"sketch": ("s.png", contour_png(served.extra, "000017"))}, data={"k": "1"}).json()
    assert _case_of(served)[found["results"][0]["image_id"]].endswith("-000017")  # an added image is found
    assert found["build_id"] == refreshed.json()["build_id"]


@pytest.mark.postgres
@pytest.mark.parametrize("served_archive", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_database_outage_is_503_and_the_service_recovers(served: Served) -> None:
    url = served.settings.archive.database_url
    name = url.rsplit("/", 1)[1]
    admin = make_engine(url.rsplit("/", 1)[0] + "/test").execution_options(isolation_level="AUTOCOMMIT")
    sketch = {"sketch": ("s.png", contour_png(served.dataset, "000006"))}
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name})
        with served.client() as client:
            for response in (client.get("/v1/images/1"), client.post("/v1/search", files=sketch)):
                assert response.status_code == 503 and "database" in response.json()["error"], response.text
                assert "SELECT" not in response.text and "Retry-After" in response.headers
            assert client.get("/readyz").status_code == 503 and client.get("/healthz").status_code == 200
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    with served.client() as client:
        assert client.get("/v1/images/1").status_code == 200
        assert client.post("/v1/search", files=sketch).status_code == 200
        assert client.get("/readyz").status_code == 200
    archive = served.archive()
    try:
        with archive.sessions() as session:
            assert session.scalar(select(func.count()).select_from(QueryLog)) > 0
    finally:
        archive.close()
