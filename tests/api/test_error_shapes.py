"""Every route of the service, the QIDO facade's included, and every path that names none, answers an error
as the service's own JSON `{"error": ...}`, and with the CORS headers when the request comes from an
allowed origin, so a browser viewer on another origin reads the 401, 403 or 404 rather than a CORS
failure. Against the real server, each route taken from the app itself so that a new one is checked too."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from api.app import create_app
from indexing.settings import Settings
from tests.api.conftest import keys, service_settings, serving

ORIGIN = "https://viewer.example"
PUBLIC = {"/healthz", "/readyz", "/metrics", "/viewer", "/viewer/results/{query_id}"}  # no key asked (the viewer's: 404 when none is served)
UNKNOWN = {"query_id": "0" * 32, "image_id": "999999", "saved_id": "999999", "step": "0", "study": "1.2.3", "series_uid": "1.2.3.4"}


def _is_service_error(answer: httpx.Response) -> bool:
    body = answer.json()
    return list(body) == ["error"] and isinstance(body["error"], str) and body["error"] and "\n" not in body["error"]


def _allowed(answer: httpx.Response) -> bool:
    return answer.headers.get("access-control-allow-origin") == ORIGIN


@pytest.mark.parametrize("served_archive", ["sqlite"], indirect=True)
def test_every_route_and_unknown_path_errs_in_the_services_json_with_cors_for_an_allowed_origin(
        served_archive: Settings, tmp_path: Path) -> None:
    settings = service_settings(served_archive, tmp_path, cors_origins=(ORIGIN,))
    app = create_app(settings)

    async def boom() -> None:  # a fault no handler foresaw
        raise RuntimeError("an unforeseen fault with a row value 1234")

    app.add_api_route("/test-only/boom", boom)
    routes = [(route.path, method) for route in app.routes if isinstance(route, APIRoute)
              for method in sorted(route.methods) if route.path != "/test-only/boom"]
    assert len(routes) >= 20 and any(path.startswith("/dicomweb/") for path, _ in routes)
    search, _ = keys(served_archive)
    statuses: dict[str, set[int]] = {"anonymous": set(), "search": set()}
    with serving(app) as url, httpx.Client(base_url=url, headers={"Origin": ORIGIN}, timeout=60) as client:
        for path, method in routes:
            concrete = re.sub(r"\{(\w+)\}", lambda m: UNKNOWN[m.group(1)], path)
            for who, headers in (("anonymous", {}), ("search", {"Authorization": f"Bearer {search}"})):
                answer = client.request(method, concrete, headers=headers)
                assert _allowed(answer), (method, path, who, answer.headers)
                if answer.status_code < 400:
                    continue  # a route that lists the caller's own things (none) or the example case
                statuses[who].add(answer.status_code)
                assert _is_service_error(answer), (method, path, who, answer.text)
                if who == "anonymous" and path not in PUBLIC:
                    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", (method, path)
        assert statuses["search"] >= {403, 404}
        for path in ("/nope", "/v1/nope", f"/dicomweb/results/{UNKNOWN['query_id']}/studies/1.2/series/1.3/metadata",
                     f"/dicomweb/results/{UNKNOWN['query_id']}/studies/1.2/series/1.3/instances/1.4/frames/1"):
            answer = client.get(path)
            assert answer.status_code == 404 and _is_service_error(answer) and _allowed(answer), path
        wrong = client.delete("/healthz")
        assert wrong.status_code == 405 and _is_service_error(wrong) and _allowed(wrong)
        large = client.post("/v1/search", content=b"x" * (settings.max_upload_bytes + 1), headers={"content-type": "application/json"})
        assert large.status_code == 413 and _is_service_error(large) and _allowed(large)
        fault = client.get("/test-only/boom")
        assert fault.status_code == 500 and _allowed(fault)
        assert fault.json() == {"error": "the service failed on this request; the error is in its log"}
        limited = client.get("/healthz")
        assert {"retry-after", "www-authenticate"} <= {h.strip().lower() for h in limited.headers["access-control-expose-headers"].split(",")}
        preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "Accept, Authorization"}
        assert client.options("/dicomweb/results/x/studies", headers=preflight).status_code == 200
        refused = client.options("/v1/search", headers={**preflight, "Origin": "https://elsewhere.example"})
        assert refused.status_code == 400 and refused.json() == {"error": "the CORS settings do not allow this request's origin"}
        assert "access-control-allow-origin" not in refused.headers
        stranger = client.get("/dicomweb/results/x/studies", headers={"Origin": "https://elsewhere.example"})
        assert stranger.status_code == 401 and _is_service_error(stranger) and "access-control-allow-origin" not in stranger.headers


@pytest.mark.parametrize("served_archive", ["sqlite"], indirect=True)
def test_a_client_that_goes_away_mid_upload_gets_nothing_logs_nothing_and_counts_as_499(served_archive: Settings,
                                                                                      tmp_path: Path) -> None:
    """The pad drops a preview that a newer one replaces, sometimes mid-upload: not a fault of the service."""
    import logging
    import socket
    import time

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(handler)
    search, _ = keys(served_archive)
    head = (f"POST /v1/search HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {search}\r\n"
            "Content-Type: multipart/form-data; boundary=cut\r\nContent-Length: 100000\r\n\r\n"
            '--cut\r\nContent-Disposition: form-data; name="sketch"; filename="s.png"\r\nContent-Type: image/png\r\n\r\n')
    try:
        with serving(create_app(service_settings(served_archive, tmp_path))) as url, httpx.Client(base_url=url, timeout=60) as client:
            host, port = url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port))) as raw:
                raw.sendall(head.encode() + b"\x89PNG" * 256)
            counted = 's2m_http_requests_total{method="POST",route="/v1/search",status="499"} 1.0'
            deadline = time.monotonic() + 30
            while counted not in client.get("/metrics").text:
                assert time.monotonic() < deadline, "the dropped upload was never counted"
                time.sleep(0.1)
            assert client.get("/healthz").status_code == 200
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
    assert [record.getMessage() for record in records if record.levelno >= logging.ERROR] == []
