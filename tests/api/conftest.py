"""The HTTP service under test: a real uvicorn server on a small embedded phantom archive, on
SQLite and on the real PostgreSQL, with the shipped bundle (a tiny one finds no instances).

One archive and one server per module and backend (loading the models and embedding the archive
is the slow part); tests that change the archive say so and run last in their module.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from api.app import create_app
from api.settings import ServiceSettings
from api.viewer.orthanc import free_port, wait_for_answer  # noqa: F401 (the tests' one free-port helper)
from generation.presets import SHIPPED_BUNDLE
from indexing import store
from indexing.archive import Archive
from indexing.settings import Settings
from tests.indexing.conftest import TEST_KEY, emptied_postgres, postgres_database  # noqa: F401 (fixture)
from tests.retrieval.conftest import archive_models, indexed_archive, phantom_archive  # noqa: F401 (fixtures)


REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's (scripts/ensure-chromium.sh); Playwright never downloads one


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's chromium driven by Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


def stroke(page, points: list[tuple[float, float]]) -> None:  # type: ignore[no-untyped-def]
    """A mouse stroke on the pad's canvas through points given as fractions of the canvas."""
    box = page.locator("#canvas").bounding_box()
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for point in at[1:]:
        page.mouse.move(*point, steps=2)
    page.mouse.up()


def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float = 0.0, end: float = 2 * math.pi, n: int = 36):
    return [(cx + rx * math.cos(start + (end - start) * i / n), cy + ry * math.sin(start + (end - start) * i / n))
            for i in range(n + 1)]


def draw_throat(page, n: int = 36) -> None:  # type: ignore[no-untyped-def]
    """Outlines as a clinician would draw them on the pad: pharyngeal wall, uvula, two tonsils, the tongue's edge,
    the large ones with `n` segments (each mouse move is a round trip to the browser: fewer are faster)."""
    small = max(8, n * 5 // 9)
    stroke(page, _ellipse(0.5, 0.45, 0.3, 0.33, n=n))
    stroke(page, _ellipse(0.5, 0.42, 0.05, 0.1, n=small))
    stroke(page, _ellipse(0.25, 0.55, 0.07, 0.15, n=small))
    stroke(page, _ellipse(0.75, 0.55, 0.07, 0.15, n=small))
    stroke(page, _ellipse(0.5, 0.98, 0.4, 0.2, math.pi, 2 * math.pi, n=n))


def screenshot(page, name: str, tmp_path: Path, full_page: bool = False,  # type: ignore[no-untyped-def]
               selector: str | None = None) -> None:
    """Into tmp_path; also into S2M_SCREENSHOT_DIR when set (how the screenshots in docs/ are made);
    of one element when `selector` names it."""
    folders = [tmp_path] + ([Path(os.environ["S2M_SCREENSHOT_DIR"])] if os.environ.get("S2M_SCREENSHOT_DIR") else [])
    for folder in folders:
        if selector is not None:
            page.locator(selector).screenshot(path=str(folder / name))
        else:
            page.screenshot(path=str(folder / name), full_page=full_page)


# OHIF's build, installed once and reused across test runs (the first run fetches it with npm).
VIEWER_CACHE = Path(os.environ.get("S2M_TEST_VIEWER_DIR") or Path.home() / ".cache" / "sketch2medi" / "viewer")


@pytest.fixture(scope="session")
def ohif_build() -> Path:
    """The pinned OHIF build in the reused cache folder; a skip, saying why, without npm or its registry."""
    from api.viewer.install import ViewerInstallError, install_viewer

    try:
        return install_viewer(VIEWER_CACHE).build
    except ViewerInstallError as error:
        if "hash" in str(error):
            raise
        pytest.skip(f"the OHIF viewer could not be installed here: {error}")


@dataclass(frozen=True)
class Served:
    url: str
    settings: ServiceSettings
    search_key: str
    admin_key: str
    dataset: Path  # the phantoms the archive holds (images/, masks/)
    extra: Path  # 4 more phantoms, not yet ingested

    def client(self, key: str | None = "search", timeout: float = 60.0) -> httpx.Client:
        token = {"search": self.search_key, "admin": self.admin_key}.get(key or "", key)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def archive(self) -> Archive:
        return Archive.open(self.settings.archive)


def contour_png(dataset: Path, stem: str, side: int = 256) -> bytes:
    """The true-mask contour sketch of a phantom as PNG bytes, drawn at `side` px."""
    import io

    import cv2

    from formats.contours import contour_sketch

    mask = np.asarray(Image.open(dataset / "masks" / f"{stem}.png"))
    sketch = contour_sketch(cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST))
    buffer = io.BytesIO()
    Image.fromarray(sketch).save(buffer, format="PNG")
    return buffer.getvalue()


def s2m_env(settings: Settings) -> dict[str, str]:
    """The environment an `s2m` process of this archive runs in (this tree's code, one thread)."""
    key = {"S2M_PSEUDONYM_KEY": settings.pseudonym_key.decode()} if settings.pseudonym_key else {}
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "S2M_DATA_DIR": str(settings.data_dir),
            "S2M_DATABASE_URL": settings.database_url, **key}


def run_s2m(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`s2m ARGS` as a process on this archive, its output captured."""
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=s2m_env(settings), capture_output=True, text=True, timeout=120)


def wait_until_ready(base_url: str, process: subprocess.Popen, deadline: float, failure: Callable[[], str]) -> None:
    """Poll `base_url`/readyz until it answers 200; fail with `failure()` if `process` exits or `deadline` passes."""
    assert wait_for_answer(f"{base_url}/readyz", process, deadline, interval=0.3), failure()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served_archive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   phantom_archive: Path, archive_models) -> Settings:  # noqa: F811 (fixtures)
    """A migrated archive with the 16 phantoms ingested, embedded and indexed."""
    root = tmp_path_factory.mktemp(f"served-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'archive.sqlite3'}"
    else:
        url = emptied_postgres(request)
    settings = Settings(data_dir=root / "data", database_url=url, pseudonym_key=TEST_KEY)
    indexed_archive(settings, phantom_archive, archive_models)
    return settings


def keys(settings: Settings) -> tuple[str, str]:
    archive = Archive.open(settings)
    try:
        with archive.sessions.begin() as session:
            _, search = store.create_api_key(session, "viewer", ["search"])
            _, admin = store.create_api_key(session, "admin", ["admin"])
    finally:
        archive.close()
    return search, admin


@contextmanager
def running(settings: ServiceSettings) -> Iterator[str]:
    """The app of `settings` under a real uvicorn server on a free local port; yields its base URL."""
    with serving(create_app(settings)) as url:
        yield url


@contextmanager
def serving(app: object, port: int | None = None) -> Iterator[str]:
    """An ASGI app under a real uvicorn server on `port` (default a free local one); yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def service_settings(archive: Settings, tmp: Path, **changes: object) -> ServiceSettings:
    return replace(ServiceSettings(archive=archive, bundle=SHIPPED_BUNDLE, device="cpu", web_dir=tmp / "no-web"), **changes)


@pytest.fixture(scope="module")
def served(served_archive: Settings, phantom_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:  # noqa: F811
    settings = service_settings(served_archive, tmp_path_factory.mktemp("service"),
                                wado_url="https://pacs.example/dicom-web/studies/{study}/series/{series}/instances/{sop}")
    search, admin = keys(served_archive)
    with running(settings) as url:
        yield Served(url, settings, search, admin, phantom_archive, phantom_archive.parent / "extra")
