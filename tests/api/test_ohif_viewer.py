"""A query's results in the real OHIF viewer (the pinned @ohif/app build) in Debian's chromium.

Everything is real: the service on an indexed phantom archive, a private Orthanc holding the same
phantoms as DICOM (the PACS), the viewer's origin (`api/viewer/origin.py`) serving OHIF with its
generated config and forwarding to both. OHIF is installed once into a cache folder reused across
runs (`S2M_TEST_VIEWER_DIR`, default ~/.cache/sketch2medi/viewer): the first run fetches it with
the machine's npm; without npm or its registry the test skips, saying so.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest

from api.settings import WEB_DIR, ServiceSettings
from api.viewer.config import ViewerSettings
from api.viewer.orthanc import Orthanc, orthanc_binary, private_orthanc
from api.viewer.origin import create_viewer_app
from indexing.settings import Settings
from tests.api.conftest import CHROMIUM, contour_png, free_port, keys, running, service_settings, serving
from tests.indexing.conftest import TEST_KEY
from tests.retrieval.conftest import archive_models, indexed_archive, phantom_archive  # noqa: F401 (fixtures)

TIMEOUT_MS = 60_000
K = 5

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is missing: run scripts/ensure-chromium.sh"),
    pytest.mark.skipif(orthanc_binary() is None, reason="Orthanc with its DICOMweb plugin is missing: run scripts/ensure-orthanc.sh"),
]
playwright_api = pytest.importorskip("playwright.sync_api")


@dataclass(frozen=True)
class Stack:
    service: str
    viewer: str
    key: str
    pacs: Orthanc


@pytest.fixture(scope="module")
def stack(ohif_build: Path, phantom_archive: Path, archive_models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:  # noqa: F811
    from phantoms.dicom import write_dataset_dicoms

    root = tmp_path_factory.mktemp("ohif")
    archive = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'archive.sqlite3'}", pseudonym_key=TEST_KEY)
    indexed_archive(archive, phantom_archive, archive_models)
    search_key, _ = keys(archive)
    viewer_port = free_port()
    with private_orthanc(root / "orthanc") as pacs:
        pacs.upload(write_dataset_dicoms(phantom_archive, root / "dicom"))
        settings: ServiceSettings = service_settings(archive, root, viewer_port=viewer_port, web_dir=WEB_DIR)  # with the pad
        with running(settings) as service:
            viewer = ViewerSettings(build=ohif_build, service_url=service, pacs_url=pacs.dicomweb, archive=archive)
            with serving(create_viewer_app(viewer), viewer_port) as viewer_url:
                yield Stack(service, viewer_url, search_key, pacs)


def _search(stack: Stack, dataset: Path) -> dict:
    with httpx.Client(base_url=stack.service, headers={"Authorization": f"Bearer {stack.key}"}, timeout=60) as client:
        answer = client.post("/v1/search", files={"sketch": ("s.png", contour_png(dataset, "000003"), "image/png")},
                             data={"k": str(K)})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _non_black_share(png: bytes) -> float:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return float((pixels > 40).mean())


def test_worklist_lists_the_query_in_rank_order_and_opens_the_first_hit(browser, stack: Stack, phantom_archive: Path,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    found = _search(stack, phantom_archive)
    hits = found["results"]
    assert len({hit["study_uid"] for hit in hits}) == K
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    # the pad's "results in viewer" link: the service leads to the viewer's port, which asks for the key once
    page.goto(f"{stack.service}/viewer/results/{found['query_id']}")
    page.fill("#key", stack.key)
    page.click("#key-save")
    rows = page.locator("tr[aria-selected]")
    rows.nth(K - 1).wait_for(timeout=TIMEOUT_MS)
    assert rows.count() == K  # exactly the query's matches
    ranks = [rows.nth(i).locator("td").first.text_content() for i in range(K)]
    assert ranks == [str(rank) for rank in range(1, K + 1)]
    shown = [rows.nth(i).locator("td").nth(2).text_content() for i in range(K)]
    expected = [date.fromisoformat(hit["study_date"]).strftime("%d-%b-%Y") for hit in hits]
    assert shown == expected  # rank order, not OHIF's newest-first

    rows.first.dblclick()  # OHIF's default workflow on the first hit's study
    page.wait_for_url(re.compile(r"/viewer\?"), timeout=TIMEOUT_MS)
    assert hits[0]["study_uid"] in page.url
    viewport = page.locator(".cornerstone-viewport-element, [data-viewport-uid]").first
    viewport.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("document.querySelector('canvas.cornerstone-canvas') !== null", timeout=TIMEOUT_MS)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while (share := _non_black_share(viewport.screenshot())) < 0.2 and time.monotonic() < deadline:
        page.wait_for_timeout(300)
    assert share >= 0.2  # the photograph is drawn: most of the viewport is not black
    skip = page.get_by_text("Skip all")
    if skip.count():
        skip.first.click()
    page.wait_for_timeout(300)
    folders = [tmp_path] + ([Path(os.environ["S2M_SCREENSHOT_DIR"])] if os.environ.get("S2M_SCREENSHOT_DIR") else [])
    for folder in folders:
        page.screenshot(path=str(folder / "ohif_viewer_from_hit.png"))

    # filtered down to rank 2's accession number, the row keeps the query's rank (not its place in the list)
    page.goto(f"{stack.viewer}/?query={found['query_id']}&accession={hits[1]['case_id']}")
    page.wait_for_function("document.querySelectorAll('tr[aria-selected]').length === 1", timeout=TIMEOUT_MS)
    assert rows.first.locator("td").first.text_content() == "2"
    assert not errors, errors


def test_the_pads_links_open_a_hit_and_the_results_in_the_viewer(browser, stack: Stack, phantom_archive: Path,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(stack.service + "/")
    page.fill("#api-key", stack.key)
    page.click("#key-save")
    page.fill("#k", str(K))
    sketch = tmp_path / "sketch.png"
    sketch.write_bytes(contour_png(phantom_archive, "000003"))
    page.set_input_files("#upload", str(sketch))
    page.wait_for_selector("#canvas[data-items='1']")
    page.click("#search")
    page.wait_for_selector("#grid .hit", timeout=TIMEOUT_MS)
    query = page.get_attribute("#grid", "data-query-id")
    assert page.get_attribute("#results-viewer", "href") == f"/viewer/results/{query}"
    page.locator("#grid .hit").nth(1).click()
    page.wait_for_selector("#detail[data-ready=true]", timeout=TIMEOUT_MS)
    link = page.get_attribute("#detail-viewer", "href") or ""
    assert link.startswith("/viewer?StudyInstanceUIDs=") and link.endswith(f"&query={query}")
    study = link.split("=")[1].split("&")[0]

    with page.context.expect_page() as opened:
        page.click("#detail-viewer")  # a new tab on the viewer's origin: the key page, then that study
    viewer = opened.value
    viewer.on("pageerror", lambda error: errors.append(str(error)))
    viewer.fill("#key", stack.key)
    viewer.click("#key-save")
    viewer.wait_for_url(re.compile(r"/viewer\?"), timeout=TIMEOUT_MS)
    viewer.wait_for_function("document.querySelector('canvas.cornerstone-canvas') !== null", timeout=TIMEOUT_MS)
    assert study in viewer.url
    viewer.goto(f"{stack.service}/viewer/results/{query}")  # the key is kept: straight to the worklist
    viewer.locator("tr[aria-selected]").nth(K - 1).wait_for(timeout=TIMEOUT_MS)
    assert viewer.locator("tr[aria-selected]").count() == K and not errors
