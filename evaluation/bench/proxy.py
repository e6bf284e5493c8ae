"""Debian's nginx in front of `s2m serve` replicas, as docs/nginx-sketch2medi.conf deploys it: the
benchmark's replica rows and the replica tests (tests/api/test_replicas.py) run that file as it is,
with only the replicas' ports and the listen address replaced, inside a minimal main configuration."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SNIPPET = Path(__file__).resolve().parents[2] / "docs" / "nginx-sketch2medi.conf"
UPSTREAM_HEADER = "X-Upstream"  # added by this main configuration only: which replica answered
READY_TIMEOUT_S = 30
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


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nginx_binary() -> str | None:
    """nginx's executable, or None where Debian's package is not installed (scripts/ensure-nginx.sh)."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def proxy_config(ports: list[int], listen_port: int) -> str:
    """docs/nginx-sketch2medi.conf with these replica ports (one `server` line each) and this listen port."""
    text = SNIPPET.read_text()
    documented = re.findall(r"^\s*server 127\.0\.0\.1:\d+[^\n]*$", text, flags=re.M)
    if not documented:
        raise RuntimeError("the documented nginx configuration names no upstream server")
    # the documented line's options for every replica: as many `server` lines as ports
    lines = [re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", documented[0]) for port in ports]
    text = text.replace("\n".join(documented), "\n".join(lines), 1)
    listen = re.findall(r"^\s*listen [^;]+;", text, flags=re.M)
    if len(listen) != 1:
        raise RuntimeError("the documented nginx configuration must have one listen line")
    return text.replace(listen[0], f"    listen 127.0.0.1:{listen_port};", 1)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not ended in 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@contextmanager
def nginx(ports: list[int], root: Path) -> Iterator[str]:
    """nginx in the foreground on a free loopback port, round-robin over `ports`; yields its base URL."""
    import httpx

    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (scripts/ensure-nginx.sh installs Debian's package)")
    root.mkdir(parents=True, exist_ok=True)
    listen_port = free_port()
    (root / "sketch2medi.conf").write_text(proxy_config(ports, listen_port))
    # as root, nginx's workers would run as `nobody`, who cannot write these temporary folders
    user = "user root;" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(MAIN.format(root=root, user=user, header=UPSTREAM_HEADER))
    arguments = [binary, "-p", str(root), "-e", str(root / "error.log"), "-c", str(root / "nginx.conf")]
    checked = subprocess.run([*arguments, "-t"], capture_output=True, text=True, timeout=30)
    if checked.returncode != 0:
        raise RuntimeError(f"nginx refused the configuration: {checked.stderr.strip().splitlines()[-1]}")
    process = subprocess.Popen([*arguments, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{listen_port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=5)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start: see its error.log") from None
                time.sleep(0.1)
        yield url
    finally:
        stop(process)
