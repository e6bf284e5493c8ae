"""The HTTP service under load: `s2m serve` as its own process, N closed-loop clients posting to /v1/search.

Each client sends its next request when the last one answered (multipart PNG upload, k = 10,
H's T steps or `S2M_REFINE_STEPS`); a row reports requests/s, p50/p95/p99 ms, errors, the mean batch size (from
/metrics) and the load average. Each batching setting starts a fresh server, so each starts with
an empty stored-vector cache.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.bench.proxy import free_port, nginx, stop
from indexing import store
from indexing.archive import Archive
from indexing.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CONCURRENCY = (1, 4, 16, 64)
READY_TIMEOUT_S = 300
# What a server started with these environment variables will do: (searches at once, H's steps T or
# None for the trained T). The service's own settings answer it; the caller passes them in.
ServerShape = Callable[[dict[str, str]], tuple[int, int | None]]


def search_key(settings: Settings) -> str:
    """A new API key with the search scope on the archive at `settings`."""
    archive = Archive.open(settings)
    try:
        with archive.sessions.begin() as session:
            _, token = store.create_api_key(session, "bench", ["search"])
    finally:
        archive.close()
    return token


def _batch_stats(metrics: str) -> tuple[float, float]:
    values = {line.split()[0]: float(line.split()[-1]) for line in metrics.splitlines()
              if line.startswith(("s2m_search_batch_size_count", "s2m_search_batch_size_sum"))}
    return values.get("s2m_search_batch_size_count", 0.0), values.get("s2m_search_batch_size_sum", 0.0)


async def _batch_totals(client: Any, metrics_urls: list[str]) -> tuple[float, float]:
    """Batches and searches so far, summed over every replica's own /metrics."""
    totals = [_batch_stats((await client.get(f"{url}/metrics")).text) for url in metrics_urls]
    return sum(batches for batches, _ in totals), sum(searches for _, searches in totals)


async def load(url: str, token: str, sketches: list[bytes], clients: int, per_client: int,
               metrics_urls: list[str]) -> dict[str, Any]:
    """`clients` closed-loop clients, each sending `per_client` searches to `url`: one row of figures
    (the mean batch read from each replica's /metrics at `metrics_urls`)."""
    import httpx

    latencies: list[float] = []
    errors = 0

    async def client_loop(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal errors
        for i in range(per_client):
            sketch = sketches[(offset * per_client + i) % len(sketches)]
            started = time.perf_counter()
            response = await client.post("/v1/search", files={"sketch": ("q.png", sketch, "image/png")}, data={"k": "10"})
            latencies.append((time.perf_counter() - started) * 1000.0)
            if response.status_code != 200:
                errors += 1

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600, limits=limits) as client:
        before = await _batch_totals(client, metrics_urls)
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client, c) for c in range(clients)))
        wall = time.perf_counter() - started
        after = await _batch_totals(client, metrics_urls)
    batches, searches = after[0] - before[0], after[1] - before[1]
    values = np.array(latencies)
    return {
        "clients": clients, "requests": len(latencies), "errors": errors, "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 3),
        **{f"p{q}_ms": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)},
        "mean_batch": round(searches / batches, 2) if batches else None,
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def _wait_until_ready(url: str, server: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the benchmark's server did not become ready")
        time.sleep(0.5)


def _start_server(env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    """`s2m serve` on a free loopback port with `env`; its URL and process, once ready."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, server)
    except RuntimeError:
        server.kill()
        raise
    return url, server


@contextmanager
def _served(env: dict[str, str], replicas: int, root: Path) -> Iterator[tuple[str, list[str]]]:
    """`replicas` servers with `env`, behind nginx as documented when more than one: the address the
    clients use and each replica's own (for its /metrics)."""
    servers: list[tuple[str, subprocess.Popen]] = []
    try:
        for _ in range(replicas):
            servers.append(_start_server(env))
        urls = [url for url, _ in servers]
        if replicas == 1:
            yield urls[0], urls
        else:
            with nginx([int(url.rsplit(":", 1)[1]) for url in urls], root / "nginx") as proxy_url:
                yield proxy_url, urls
    finally:
        for _, server in servers:
            stop(server)


def load_service(settings: Settings, sketches: list[bytes], plan: dict[int, int], batching: list[str],
                 wait_ms: float, server_shape: ServerShape, model: Path | None = None,
                 on_row: Callable[[dict[str, Any]], None] | None = None, replicas: tuple[int, ...] = (1,)) -> list[dict[str, Any]]:
    """For each batching setting ("on": batches of up to 16, "off": 1) and replica count, fresh servers
    (more than one: behind nginx, round-robin), a warm-up, then one `load` row per clients ->
    requests-per-client entry of `plan`."""
    token = search_key(settings)
    rows = []
    for mode in batching:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "S2M_DATA_DIR": str(settings.data_dir), "S2M_DATABASE_URL": settings.database_url,
               "S2M_PSEUDONYM_KEY": (settings.pseudonym_key or b"").decode(), "S2M_BATCH_MAX_SIZE": "16" if mode == "on" else "1",
               "S2M_BATCH_MAX_WAIT_MS": str(wait_ms), "S2M_RATE_LIMIT_PER_MINUTE": "1000000", "S2M_RATE_LIMIT_BURST": "100000"}
        if model is not None:
            env["S2M_MODEL"] = str(model)
        concurrency, refine_steps = server_shape(env)
        for count in replicas:
            with _served(env, count, settings.data_dir.parent) as (url, own_urls):
                for warm in own_urls:  # each replica's models warmed before the clock starts
                    asyncio.run(load(warm, token, sketches, 4, 2, [warm]))
                for clients, per_client in plan.items():
                    row = {"batching": mode, "max_wait_ms": wait_ms if mode == "on" else None, "replicas": count,
                           "concurrency": concurrency, "refine_steps": refine_steps,
                           **asyncio.run(load(url, token, sketches, clients, per_client, own_urls))}
                    rows.append(row)
                    if on_row is not None:
                        on_row(row)
    return rows
