"""A query's results in the real OHIF viewer (the pinned @ohif/app build) in Debian's chromium.

Everything is real: the service on an indexed phantom archive, a private Orthanc holding the same
phantoms as DICOM (the PACS), the viewer's origin (`api/viewer/origin.py`) serving OHIF with its
generated config and forwarding to both. OHIF is installed once into a cache folder reused across
runs (`S2M_TEST_VIEWER_DIR`, default ~/.cache/sketch2medi/viewer): the first run fetches it with
the machine's npm; without npm or its registry the test skips, saying so.
"""

from __future__ import annotations

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
from tests.api.conftest import CHROMIUM, contour_png, draw_throat, free_port, keys, running, screenshot, service_settings, serving
from tests.indexing.conftest import TEST_KEY
from tests.retrieval.conftest import archive_models, indexed_archive, phantom_archive  # noqa: F401 (fixtures)

TIMEOUT_MS = 60_000
K = 5
LOOP_K = 8  # half the archive: a refine has cases to bring in

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


def test_worklist_lists_the_query_in_rank_order_and_opens_the_first_hit(browser, stack: Stack, phantom_archive: Path) -> None:  # noqa: F811
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

    # filtered down to rank 2's accession number, the row keeps the query's rank (not its place in the list)
    page.goto(f"{stack.viewer}/?query={found['query_id']}&accession={hits[1]['case_id']}")
    page.wait_for_function("document.querySelectorAll('tr[aria-selected]').length === 1", timeout=TIMEOUT_MS)
    assert rows.first.locator("td").first.text_content() == "2"
    assert not errors, errors


def _ids(page) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(i) for i in page.evaluate("[...document.querySelectorAll('#grid .hit')].map(e => e.dataset.imageId)")]


def test_the_clinicians_loop_from_a_drawing_to_the_viewer_and_back(browser, stack: Stack, tmp_path: Path) -> None:
    """Issue 35's loop as a clinician clicks through it: draw on the pad, search and keep the search,
    mark two cases right and one not this, Refine, open the refined first hit in OHIF (that study
    drawn, no tour over it), go back to OHIF's study list (the refined query's matches), come back to
    the pad and reopen the first search from the saved searches and from the recent searches."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(stack.service + "/")
    page.fill("#api-key", stack.key)
    page.click("#key-save")
    page.fill("#k", str(LOOP_K))
    draw_throat(page, n=24)
    page.click("#search")
    page.wait_for_selector("#grid .hit", timeout=TIMEOUT_MS)
    first, first_query = _ids(page), page.get_attribute("#grid", "data-query-id")
    page.fill("#save-name", "first look")
    page.click("#save-search")
    page.locator("#saved-list li").first.wait_for(timeout=TIMEOUT_MS)

    cards = page.locator("#grid .hit")
    cards.nth(1).locator("button.like").click()
    cards.nth(3).locator("button.like").click()
    cards.nth(0).locator("button.unlike").click()
    assert "2 right, 1 not this" in (page.text_content("#marks-state") or "") and page.locator("#detail").is_hidden()
    page.click("#refine-search")
    page.wait_for_function("document.getElementById('results-title').textContent.startsWith('Refined')", timeout=TIMEOUT_MS)
    refined = _ids(page)
    assert len(refined) == LOOP_K and first[0] not in refined and refined != first
    assert "Refined (round 1)" in (page.text_content("#results-note") or "") and page.locator("#grid .hit.new").count() >= 1
    page.wait_for_function("[...document.querySelectorAll('#grid .hit img')].every(i => i.naturalWidth > 0)")
    screenshot(page, "sketch_pad_refined.png", tmp_path)
    query = page.get_attribute("#grid", "data-query-id")
    assert page.get_attribute("#results-viewer", "href") == f"/viewer/results/{query}"
    with httpx.Client(base_url=stack.service, headers={"Authorization": f"Bearer {stack.key}"}, timeout=60) as client:
        hits = client.get(f"/v1/queries/{query}").json()["results"]
    assert [hit["image_id"] for hit in hits] == refined

    # the refined first hit in OHIF: a new tab on the viewer's origin, which asks for the key once
    cards.first.click()
    page.wait_for_selector("#detail[data-ready=true]", timeout=TIMEOUT_MS)
    assert page.get_attribute("#detail-viewer", "href") == f"/viewer?StudyInstanceUIDs={hits[0]['study_uid']}&query={query}"
    with page.context.expect_page() as opened:
        page.click("#detail-viewer")
    viewer = opened.value
    viewer.on("pageerror", lambda error: errors.append(str(error)))
    requested: list[str] = []
    viewer.on("request", lambda request: requested.append(request.url))
    viewer.fill("#key", stack.key)
    viewer.click("#key-save")
    viewer.wait_for_url(re.compile(r"/viewer\?"), timeout=TIMEOUT_MS)
    assert hits[0]["study_uid"] in viewer.url
    viewer.wait_for_function("document.querySelector('canvas.cornerstone-canvas') !== null", timeout=TIMEOUT_MS)
    viewport = viewer.locator(".cornerstone-viewport-element, [data-viewport-uid]").first
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while (share := _non_black_share(shot := viewport.screenshot())) < 0.2 and time.monotonic() < deadline:
        viewer.wait_for_timeout(300)
    assert share >= 0.2  # the photograph is drawn: most of the viewport is not black
    # and it is the first hit's: every study the viewer asked the PACS for is that one, down to its pixels
    # (phantoms look alike, so this is read from the requests rather than from the drawn picture)
    studies = {url.split("/studies/")[1].split("/")[0] for url in requested if "/studies/" in url}
    assert studies == {hits[0]["study_uid"]}
    assert any(f"/studies/{hits[0]['study_uid']}/series/" in url and "/frames/" in url for url in requested)
    shown_date = date.fromisoformat(hits[0]["study_date"]).strftime("%d-%b-%Y")
    playwright_api.expect(viewer.locator('[data-cy="viewport-grid"]')).to_contain_text(shown_date)  # OHIF's overlay: its date
    assert viewer.locator(".shepherd-element").count() == 0  # no first-run tour over the study (app-config.js)
    screenshot(viewer, "ohif_viewer_from_hit.png", tmp_path)

    # OHIF's own way back to its study list: exactly the refined query's matches, in rank order, and it stays so
    viewer.click('[data-cy="return-to-work-list"]')
    rows = viewer.locator("tr[aria-selected]")
    rows.nth(LOOP_K - 1).wait_for(timeout=TIMEOUT_MS)
    assert rows.count() == LOOP_K
    assert [rows.nth(i).locator("td").first.text_content() for i in range(LOOP_K)] == [str(rank) for rank in range(1, LOOP_K + 1)]
    listed = [rows.nth(i).locator("td").nth(2).text_content() for i in range(LOOP_K)]
    assert listed == [date.fromisoformat(hit["study_date"]).strftime("%d-%b-%Y") for hit in hits]
    assert f"query={query}" in viewer.url

    # back on the pad (reloaded: what it lists comes from the service), the first search reopened with its cases
    page.bring_to_front()
    page.reload()
    page.locator("#saved-list li button.reopen", has_text="first look").click()
    page.wait_for_function("document.getElementById('results-title').textContent.includes('first look')", timeout=TIMEOUT_MS)
    assert _ids(page) == first  # searched again: a new query
    page.click("#history summary")
    page.locator(f"#history-list li[data-query-id='{first_query}'] button.reopen").click()  # the first search itself
    page.wait_for_function(f"document.getElementById('grid').dataset.queryId === '{first_query}'", timeout=TIMEOUT_MS)
    assert _ids(page) == first
    assert not errors, errors
