"""The service as deployed, for tests/api/test_replicas.py: `s2m serve` processes on loopback ports
and Debian's nginx in front of them (evaluation/bench/proxy.py: docs/nginx-sketch2medi.conf with only
the ports and the listen address replaced)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from evaluation.bench import proxy
from evaluation.bench.proxy import UPSTREAM_HEADER, stop  # noqa: F401 (the replica tests' names)
from indexing.settings import Settings
from tests.api.conftest import free_port, s2m_env, wait_until_ready


def require_nginx() -> None:
    if proxy.nginx_binary() is None:
        pytest.skip("nginx is not installed (scripts/ensure-nginx.sh installs Debian's package)")


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


@contextmanager
def nginx(ports: list[int], root: Path) -> Iterator[str]:
    """The benchmark's nginx (evaluation/bench/proxy.py) over `ports`; skips where nginx is not installed."""
    require_nginx()
    with proxy.nginx(ports, root) as url:
        yield url
