"""`s2m serve --viewer-port` as a process: the viewer's origin beside the service, its key page and cookie,
its generated config, and its data paths, which answer 401 and no data without a key."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from indexing.settings import Settings
from tests.api.conftest import VIEWER_CACHE, contour_png, free_port, keys, s2m_env, wait_until_ready


@pytest.mark.parametrize("served_archive", ["sqlite"], indirect=True)
def test_serve_with_viewer_port(served_archive: Settings, phantom_archive: Path, ohif_build: Path) -> None:
    key, _ = keys(served_archive)
    env = {**s2m_env(served_archive), "S2M_VIEWER_DIR": str(VIEWER_CACHE)}
    port, viewer_port = free_port(), free_port()
    not_installed = subprocess.run([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--viewer-port", str(viewer_port)],
                                   env={**env, "S2M_VIEWER_DIR": str(served_archive.data_dir / "no-viewer")},
                                   capture_output=True, text=True, timeout=60)
    assert not_installed.returncode == 2 and "s2m viewer install" in not_installed.stderr
    assert "Traceback" not in not_installed.stderr

    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--viewer-port", str(viewer_port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base, viewer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{viewer_port}"
    try:
        wait_until_ready(base, server, time.monotonic() + 120, lambda: "s2m serve did not become ready")
        bearer = {"Authorization": f"Bearer {key}"}
        found = httpx.post(f"{base}/v1/search", headers=bearer, timeout=60, data={"k": "3"},
                           files={"sketch": ("s.png", contour_png(phantom_archive, "000002"))}).json()
        query = found["query_id"]

        # the service's viewer links lead to the viewer's port on the host the browser used
        study = found["results"][0]["study_uid"]
        opened = httpx.get(f"{base}/viewer?StudyInstanceUIDs={study}&query={query}")
        assert opened.status_code == 307 and opened.headers["location"] == f"{viewer}/viewer?StudyInstanceUIDs={study}&query={query}"
        listed = httpx.get(f"{base}/viewer/results/{query}")
        assert listed.status_code == 307 and listed.headers["location"] == f"{viewer}/?query={query}"

        with httpx.Client(base_url=viewer, timeout=30) as browser:
            config = browser.get("/app-config.js")
            assert config.status_code == 200 and "window.config = config" in config.text and '"/s2m/pacs"' in config.text
            # no key: the data paths answer 401 with the service's JSON sentence and no data
            for path in (f"/s2m/results/{query}/studies", "/s2m/pacs/studies"):
                denied = browser.get(path)
                assert denied.status_code == 401 and set(denied.json()) == {"error"}
            assert browser.get(f"/s2m/results/{query}/studies", headers={"Authorization": "Bearer s2m_0_bad"}).status_code == 401
            page = browser.get("/viewer?StudyInstanceUIDs=1.2.3")
            assert page.status_code == 303 and page.headers["location"].startswith("/s2m/key?next=%2Fviewer%3F")
            wrong = browser.post("/s2m/key", data={"key": "s2m_0_bad", "next": "/"})
            assert wrong.status_code == 401 and "not valid" in wrong.text and not browser.cookies

            kept = browser.post("/s2m/key", data={"key": key, "next": "//elsewhere.example/"})
            assert kept.status_code == 303 and kept.headers["location"] == "/"  # never another origin
            assert re.search(r"HttpOnly", kept.headers["set-cookie"], re.I) and "samesite=strict" in kept.headers["set-cookie"].lower()
            assert "<!doctype html>" in browser.get("/viewer?StudyInstanceUIDs=1.2.3").text.lower()  # OHIF's index.html
            studies = browser.get(f"/s2m/results/{query}/studies")
            assert studies.status_code == 200 and studies.headers["content-type"].startswith("application/dicom+json")
            assert [s["0020000D"]["Value"][0] for s in studies.json()][:1] == [study]
            no_pacs = browser.get("/s2m/pacs/studies")
            assert no_pacs.status_code == 404 and "S2M_PACS_URL" in no_pacs.json()["error"]
            assert browser.get("/s2m/nothing").status_code == 404 and browser.get("/no-such.js").status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=30)
