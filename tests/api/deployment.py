"""The service as deployed, for tests/api/test_replicas.py: `s2m serve` processes on loopback ports
and Debian's nginx in front of them, started with docs/nginx-sketch2medi.conf (only the ports and
the listen address replaced) inside a minimal main configuration of the test's own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from indexing.settings import Settings
from tests.api.conftest import REPO, free_port, s2m_env, wait_until_ready

SNIPPET = REPO / "docs" / "nginx-sketch2medi.conf"
UPSTREAM_HEADER = "X-Upstream"  # added by the test's main configuration only: which replica answered
MAIN = """worker_processes 1;
{user}
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    add_header {header} $upstream_addr always;
    include {root}/sketch2medi.conf;
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.skip("nginx is not installed (scripts/ensure-nginx.sh installs Debian's package)")
    return found


@dataclass
class Replica:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it (no graceful shutdown)."""
        self.process.kill()
        self.process.wait(timeout=30)


def start_replica(settings: Settings, environment: dict[str, str], log: Path, workers: int = 1) -> Replica:
    """`s2m serve` on a free loopback port (not yet ready: see `wait_ready`); its output goes to `log`."""
    port = free_port()
    with open(log, "wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                                    "--workers", str(workers)],
                                   env={**s2m_env(settings), **environment}, stdout=sink, stderr=subprocess.STDOUT)
    return Replica(port, process, log)


def wait_ready(replica: Replica, seconds: float = 180) -> None:
    wait_until_ready(replica.url, replica.process, time.monotonic() + seconds,
                     lambda: f"s2m serve on {replica.port} did not become ready:\n{replica.log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def proxy_config(ports: list[int], listen_port: int) -> str:
    """docs/nginx-sketch2medi.conf with the test's replica ports and listen port."""
    text = SNIPPET.read_text()
    servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+[^\n]*$", text, flags=re.M)
    assert len(servers) == len(ports), "the documented upstream names one server per replica"
    for line, port in zip(servers, ports):
        text = text.replace(line, re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", line), 1)
    listen = re.findall(r"^\s*listen [^;]+;", text, flags=re.M)
    assert len(listen) == 1
    return text.replace(listen[0], f"    listen 127.0.0.1:{listen_port};", 1)


@contextmanager
def nginx(ports: list[int], root: Path) -> Iterator[str]:
    """nginx in the foreground on a free port, round-robin over `ports`; yields its base URL."""
    binary = nginx_binary()
    root.mkdir(parents=True, exist_ok=True)
    listen_port = free_port()
    (root / "sketch2medi.conf").write_text(proxy_config(ports, listen_port))
    # as root, nginx's workers would run as `nobody`, who cannot write the test's temporary folders
    user = "user root;" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(MAIN.format(root=root, user=user, header=UPSTREAM_HEADER))
    checked = subprocess.run([binary, "-t", "-p", str(root), "-e", str(root / "error.log"), "-c", str(root / "nginx.conf")],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([binary, "-p", str(root), "-e", str(root / "error.log"), "-c", str(root / "nginx.conf"),
                                "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{listen_port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=5)
            break
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, (root / "error.log").read_text()
            time.sleep(0.1)
    try:
        yield url
    finally:
        stop(process)
