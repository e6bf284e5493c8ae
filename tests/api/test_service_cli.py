"""`s2m apikey create|list|revoke` and `s2m serve` as processes, against a real archive (SQLite)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from indexing.settings import Settings
from tests.api.conftest import contour_png, free_port, run_s2m as _s2m, s2m_env as _env, wait_until_ready


@pytest.mark.parametrize("served_archive", ["sqlite"], indirect=True)
def test_s2m_apikey_and_s2m_serve(served_archive: Settings, phantom_archive: Path) -> None:
    created = _s2m(served_archive, "apikey", "create", "pacs-viewer", "--scope", "search")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("s2m_") and "\n" not in token
    bad = _s2m(served_archive, "apikey", "create", "x", "--scope", "root")
    assert bad.returncode == 2 and "unknown scope" in bad.stderr and "Traceback" not in bad.stderr
    listed = _s2m(served_archive, "apikey", "list")
    assert "pacs-viewer" in listed.stdout and token.split("_", 2)[2] not in listed.stdout  # never the secret (it may itself hold "_")
    key_id = next(line.split()[0] for line in listed.stdout.splitlines() if "pacs-viewer" in line)

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env=_env(served_archive),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base, server, time.monotonic() + 120, lambda: "s2m serve did not become ready")
        headers = {"Authorization": f"Bearer {token}"}
        found = httpx.post(f"{base}/v1/search", headers=headers, timeout=60,
                           files={"sketch": ("s.png", contour_png(phantom_archive, "000002"))}, data={"k": "2"})
        assert found.status_code == 200 and len(found.json()["results"]) == 2
        revoked = _s2m(served_archive, "apikey", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert httpx.get(f"{base}/v1/images/1", headers=headers, timeout=30).status_code == 401
        assert httpx.get(f"{base}/docs", timeout=30).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    unknown = _s2m(served_archive, "apikey", "revoke", "9999")
    assert unknown.returncode == 1 and "no API key" in unknown.stderr
