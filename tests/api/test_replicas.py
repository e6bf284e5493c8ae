"""Tested as deployed (docs/operations.md, "Replicas"): two `s2m serve` processes on loopback ports
against the real PostgreSQL, Debian's nginx in front with docs/nginx-sketch2medi.conf, round-robin.

In order (the module's tests share the deployment and change it): searches and their follow-up
picture fetches alternate between the replicas with no 404; one key's rate limit holds across both;
`POST /v1/index/refresh` on one is served by both; a new bundle's build is written beside the
active one under search load and then activated, and both replicas move to it with every search
answered; one replica killed mid-load loses no request and the other keeps serving.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from generation.bundle import DIGEST, Bundle, save_network
from generation.presets import SHIPPED_BUNDLE
from indexing.settings import Settings
from tests.api.conftest import contour_png, keys, run_s2m
from tests.api.deployment import UPSTREAM_HEADER, Replica, nginx, start_replica, stop, wait_ready

pytestmark = [pytest.mark.parametrize("served_archive", ["postgresql"], indirect=True)]

BURST = 100  # each key's burst; the rate-limit test spends a fresh key's, the others stay below it
PER_MINUTE = 60
SKETCHES = ("000002", "000005", "000007", "000011")


@dataclass
class Deployment:
    proxy: str
    replicas: list[Replica]
    settings: Settings
    admin_key: str
    sketches: list[bytes]

    def key(self) -> str:
        return keys(self.settings)[0]  # a fresh search key: a bucket of its own

    def search(self, client: httpx.Client, index: int = 0) -> httpx.Response:
        return client.post("/v1/search", files={"sketch": ("s.png", self.sketches[index % len(self.sketches)], "image/png")},
                           data={"k": "3"})


@pytest.fixture(scope="module")
def deployment(served_archive: Settings, phantom_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("replicas")
    environment = {"S2M_MODEL": str(SHIPPED_BUNDLE), "S2M_RATE_LIMIT_BURST": str(BURST),
                   "S2M_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE), "S2M_BATCH_CONCURRENCY": "1"}
    replicas = [start_replica(served_archive, environment, root / f"replica-{n}.log") for n in (1, 2)]
    try:
        for replica in replicas:
            wait_ready(replica)
        admin = run_s2m(served_archive, "apikey", "create", "admin", "--scope", "admin").stdout.strip()
        with nginx([replica.port for replica in replicas], root / "nginx") as proxy:
            yield Deployment(proxy, replicas, served_archive, admin, [contour_png(phantom_archive, s) for s in SKETCHES])
    finally:
        for replica in replicas:
            stop(replica.process)


def _client(deployment: Deployment, key: str) -> httpx.Client:
    return httpx.Client(base_url=deployment.proxy, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def test_searches_and_their_picture_fetches_alternate_between_the_replicas_with_no_404(deployment: Deployment) -> None:
    key = deployment.key()
    fetched: list[tuple[str, str, int]] = []  # (search's replica, fetch's replica, status)
    for index in range(8):
        with _client(deployment, key) as client:  # a new connection per search, as a viewer would
            found = deployment.search(client, index)
        assert found.status_code == 200, found.text
        body = found.json()
        for url in (body["sketch_url"], body["generated_image_url"]):  # three requests a round: searches alternate too
            with _client(deployment, key) as client:
                picture = client.get(url)
            fetched.append((found.headers[UPSTREAM_HEADER], picture.headers[UPSTREAM_HEADER], picture.status_code))
    assert [status for _, _, status in fetched] == [200] * len(fetched)
    assert {replica for replica, _, _ in fetched} == {replica.address for replica in deployment.replicas}
    assert sum(searched != served for searched, served, _ in fetched) >= len(fetched) // 3  # many on the other replica


def test_one_keys_rate_limit_holds_across_both_replicas(deployment: Deployment) -> None:
    key, asked = deployment.key(), BURST + 30
    started = time.monotonic()
    with _client(deployment, key) as client, ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: client.get("/v1/images/example"), range(asked)))
    elapsed = time.monotonic() - started
    granted = [answer for answer in answers if answer.status_code == 200]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert len(granted) + len(refused) == asked
    assert BURST <= len(granted) <= BURST + elapsed * PER_MINUTE / 60 + 1  # one bucket, not one per replica
    assert {answer.headers[UPSTREAM_HEADER] for answer in granted} == {r.address for r in deployment.replicas}
    assert {answer.headers[UPSTREAM_HEADER] for answer in refused} == {r.address for r in deployment.replicas}


def _serving(deployment: Deployment) -> dict[str, int]:
    """Each replica's serving build id, asked of each directly with the admin key (a bucket no load spends)."""
    serving = {}
    for replica in deployment.replicas:
        answer = httpx.get(f"{replica.url}/v1/index", headers={"Authorization": f"Bearer {deployment.admin_key}"},
                           timeout=60)
        assert answer.status_code == 200, answer.text
        serving[replica.address] = answer.json()["serving_build_id"]
    return serving


def test_a_refresh_posted_to_one_replica_is_served_by_both(deployment: Deployment, phantom_archive: Path) -> None:
    key = deployment.key()
    ingested = run_s2m(deployment.settings, "archive", "ingest", str(phantom_archive.parent / "extra"))
    assert ingested.returncode == 0, ingested.stderr
    with _client(deployment, deployment.admin_key) as admin:
        refreshed = admin.post("/v1/index/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["added"] == 4
    new = refreshed.json()["build_id"]
    with _client(deployment, key) as client:
        answers = [deployment.search(client, index) for index in range(4)]
    assert {answer.json()["build_id"] for answer in answers} == {new}
    assert {answer.headers[UPSTREAM_HEADER] for answer in answers} == {r.address for r in deployment.replicas}
    assert set(_serving(deployment).values()) == {new}


def _retrained(root: Path) -> Path:
    """A copy of the shipped bundle whose H is nudged: another `bundle.version`, the same resolution and signs."""
    bundle = Path(shutil.copytree(SHIPPED_BUNDLE, root / "bundle-v2"))
    opened = Bundle.open(bundle)
    refiner = opened.load("refiner")
    with torch.no_grad():
        next(refiner.parameters()).mul_(1.001)
    facts = {name: value for name, value in opened.entry("refiner").items()
             if name not in ("config", "file", "storage_dtype", DIGEST)}
    save_network(bundle, "refiner", refiner, refiner.config, **facts)
    assert Bundle.open(bundle).version != opened.version
    return bundle


@contextmanager
def _load(deployment: Deployment, threads: int = 2) -> Iterator[list[tuple[float, float, int, str, int | None]]]:
    """Searches through the proxy on `threads` threads while the block runs: (start, end, status, replica, build id).

    Each thread has a key of its own and starts at most one search a second, the bucket's refill rate, so no
    search is refused however long the block runs (a build on a slow machine takes minutes)."""
    done: list[tuple[float, float, int, str, int | None]] = []
    stop_now = threading.Event()

    def run(offset: int, key: str) -> None:
        with _client(deployment, key) as client:
            index = offset
            while not stop_now.is_set():
                began = time.monotonic()
                answer = deployment.search(client, index)
                build = answer.json().get("build_id") if answer.status_code == 200 else None
                done.append((began, time.monotonic(), answer.status_code, answer.headers.get(UPSTREAM_HEADER, ""), build))
                index += 1
                stop_now.wait(max(0.0, began + 60 / PER_MINUTE - time.monotonic()))

    workers = [threading.Thread(target=run, args=(offset, deployment.key()), daemon=True) for offset in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield done
    finally:
        stop_now.set()
        for worker in workers:
            worker.join(timeout=120)


def test_a_new_bundle_is_built_beside_the_active_one_and_every_replica_moves_to_it(deployment: Deployment,
                                                                                tmp_path: Path) -> None:
    key, bundle = deployment.key(), _retrained(tmp_path)
    before = set(_serving(deployment).values())
    with _load(deployment) as load:
        built = run_s2m(deployment.settings, "index", "build", "--model", str(bundle), "--no-activate", "--no-progress")
        assert built.returncode == 0, built.stderr
        new = int(built.stdout.split("index build ")[1].split(":")[0])
        assert set(_serving(deployment).values()) == before  # written beside, not served yet
        activated_at = time.monotonic()
        activated = run_s2m(deployment.settings, "index", "activate", str(new))
        assert activated.returncode == 0 and f"activated index build {new}" in activated.stdout, activated.stderr
        deadline = time.monotonic() + 60
        while set(_serving(deployment).values()) != {new} and time.monotonic() < deadline:
            time.sleep(0.2)
        moved_at = time.monotonic()
        while sum(began > moved_at for began, *_ in load) < 4:
            time.sleep(0.1)
    assert [status for *_, status, _, _ in load] == [200] * len(load) and len(load) >= 6  # nothing refused meanwhile
    assert set(_serving(deployment).values()) == {new}
    assert {build for began, *_, build in load if began < activated_at} == before  # the new build waited beside
    assert {build for began, *_, build in load if began > moved_at} == {new}  # then every replica served it
    assert {build for *_, build in load} == before | {new}  # each search answered from one build, the old or the new
    with _client(deployment, key) as client:
        status = client.get("/v1/index").json()
    assert status["bundle_version"] == Bundle.open(bundle).version
    # a bad id changes nothing: one sentence, exit 2
    refused = run_s2m(deployment.settings, "index", "activate", "999999")
    assert refused.returncode == 2 and "no finished index build 999999" in refused.stderr and "Traceback" not in refused.stderr
    assert set(_serving(deployment).values()) == {new}


def test_a_replica_killed_mid_load_loses_no_request_and_the_other_keeps_serving(deployment: Deployment) -> None:
    survivor, victim = deployment.replicas
    with _load(deployment, threads=3) as load:
        while len({replica for *_, replica, _ in load}) < 2:  # both replicas served before the kill
            time.sleep(0.1)
        victim.kill()
        killed_at = time.monotonic()
        while sum(began > killed_at for began, *_ in load) < 12:
            time.sleep(0.1)
    assert [status for *_, status, _, _ in load] == [200] * len(load)  # in flight on the victim: retried on the survivor
    # nginx lists every replica it tried ("victim, survivor" for a retried request); the last one answered
    answered = [replica.split(", ")[-1] for began, _, _, replica, _ in load if began > killed_at]
    assert set(answered) == {survivor.address}
    # retried: the search in flight on the victim when it died, or the first one sent to it after
    assert any(victim.address in replica for _, ended, _, replica, _ in load if ended > killed_at)
    assert httpx.get(f"{survivor.url}/readyz", timeout=30).status_code == 200
