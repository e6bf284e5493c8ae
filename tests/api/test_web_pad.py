"""The sketch pad in a real browser (Debian's chromium driven by Playwright) against a real server.

The server is `s2m demo` itself, as a newcomer starts it (a small phantom archive, the shipped
bundle with sign directions learned for the Signs panel, its own SQLite archive and key), stopped at
the end with Ctrl-C (SIGINT), which must end it cleanly. One server and one browser for the module;
each test opens a fresh page.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.api.conftest import CHROMIUM, draw_throat, free_port, screenshot, stroke, wait_until_ready
from tests.retrieval.conftest import signs_bundle  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]
CASES = 40
UPLOAD_LIMIT = 256 * 1024  # small enough that a noise picture trips it, large enough for any drawing
DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 768, "height": 1024}
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is missing: run scripts/ensure-chromium.sh")
playwright_api = pytest.importorskip("playwright.sync_api")


@dataclass(frozen=True)
class Demo:
    url: str
    key: str
    process: subprocess.Popen[str]
    output: list[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, signs_bundle: Path) -> Iterator[Demo]:  # noqa: F811 (fixture)
    """`s2m demo --count 40` on a free port, until it prints the URL and key and answers /readyz."""
    data = tmp_path_factory.mktemp("demo-data")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "S2M_DATA_DIR": str(data), "S2M_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "demo", "--count", str(CASES), "--workers", "1",
                                "--port", str(port), "--model", str(signs_bundle)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    key = None
    deadline = time.monotonic() + 240
    assert process.stdout is not None
    for line in process.stdout:  # the demo prints the key, then serves
        output.append(line)
        if found := re.search(r"API key \(paste it into the page\): (\S+)", line):
            key = found.group(1)
        if "Ctrl-C stops the server" in line:
            break
        assert time.monotonic() < deadline, "s2m demo took too long"
    assert key is not None, "".join(output)
    url = f"http://127.0.0.1:{port}/"
    assert url in "".join(output)
    wait_until_ready(url.rstrip("/"), process, deadline, lambda: "".join(output))
    served = Demo(url, key, process, output)
    yield served
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def _page(browser, demo: Demo, viewport: dict[str, int] = DESKTOP, key: str | None = None):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    page.goto(demo.url)
    page.fill("#api-key", key if key is not None else demo.key)
    page.click("#key-save")
    return page


def _ink(page) -> int:  # type: ignore[no-untyped-def]
    """Pixels of the drawing canvas that carry ink (alpha > 0)."""
    return page.evaluate("""() => {
        const c = document.getElementById('canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")


def _error(page) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#error:not([hidden])", timeout=TIMEOUT_MS)
    return page.text_content("#error-text") or ""


def _fits(page, width: int) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
    box = page.locator("#canvas").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["width"] >= 300


def test_draw_preview_search_open_a_case_and_more_like_this(browser, demo: Demo, tmp_path: Path) -> None:
    page = _page(browser, demo)
    page.fill("#k", "8")
    draw_throat(page)
    # the live preview: x_0 and a provisional top 10 after the pen pauses
    page.wait_for_function("document.querySelectorAll('#preview-hits li img[src^=blob]').length === 10", timeout=TIMEOUT_MS)
    assert page.evaluate("document.getElementById('preview-x0').naturalWidth") > 0
    assert page.locator("#grid .hit").count() == 0  # the preview never fills the results grid

    page.click("#search")
    page.wait_for_selector("#grid .hit", timeout=TIMEOUT_MS)
    cards = page.locator("#grid .hit")
    assert cards.count() == 8
    scores = [float(text) for text in cards.locator(".score").all_text_contents()]
    assert scores == sorted(scores, reverse=True)
    assert cards.locator(".bar").count() == 8 * 3  # appearance, latent, shape on every card
    page.evaluate("document.querySelectorAll('#grid details.scores').forEach(d => { d.open = true; })")  # the scores toggle
    widths = page.evaluate("[...document.querySelectorAll('#grid .bar .fill')].map(e => e.getBoundingClientRect().width)")
    assert min(widths) > 0 and max(widths) > min(widths)
    steps = page.locator("#steps-row figure")
    assert steps.count() >= 2  # x_0 and at least one refinement step
    page.wait_for_function("[...document.querySelectorAll('#steps-row img')].every(i => i.naturalWidth > 0)")
    assert "pipeline" in (page.text_content("#timings") or "")
    assert re.search(r"\d{4}-\d{2}-\d{2}", cards.first.locator(".meta").text_content() or "")
    _fits(page, DESKTOP["width"])
    page.wait_for_function("[...document.querySelectorAll('#grid .hit img')].every(i => i.naturalWidth > 0)")
    screenshot(page, "sketch_pad_desktop.png", tmp_path)

    first = cards.first.get_attribute("data-image-id")
    cards.first.click()
    page.wait_for_selector("#detail[data-ready=true]", timeout=TIMEOUT_MS)
    assert page.evaluate("document.getElementById('detail-image').naturalWidth") > 0
    query, case = page.locator("#detail-query"), page.locator("#detail-case-sketch")
    assert query.is_visible() and case.is_visible()
    page.uncheck("#show-query")
    assert not query.is_visible() and case.is_visible()
    page.uncheck("#show-case-sketch")
    assert not case.is_visible()
    page.check("#show-query")
    assert query.is_visible()
    assert "StudyInstanceUIDs=" in (page.get_attribute("#detail-viewer", "href") or "")
    assert f"Case {first}" in (page.text_content("#detail-title") or "")

    page.click("#detail-similar")  # refine by example: the case's own vectors
    page.wait_for_function(f"document.getElementById('results-title').textContent.includes('like {first}')", timeout=TIMEOUT_MS)
    similar = page.evaluate("[...document.querySelectorAll('#grid .hit')].map(e => e.dataset.imageId)")
    assert len(similar) == 8 and first not in similar  # k cases other than the example itself
    assert page.locator("#steps-row").is_hidden()  # no sketch, so no generated steps
    assert not page.errors


def test_undo_redo_eraser_clear_and_pen_pressure(browser, demo: Demo) -> None:
    page = _page(browser, demo)
    stroke(page, [(0.2, 0.5), (0.8, 0.5)])
    drawn = _ink(page)
    assert drawn > 0
    page.keyboard.press("e")  # eraser
    assert page.get_attribute("#tool-eraser", "aria-pressed") == "true"
    stroke(page, [(0.5, 0.3), (0.5, 0.7)])
    erased = _ink(page)
    assert 0 < erased < drawn
    page.keyboard.press("Control+z")
    assert _ink(page) == drawn
    page.keyboard.press("Control+y")
    assert _ink(page) == erased
    page.click("#undo")
    assert _ink(page) == drawn
    page.click("#redo")
    assert _ink(page) == erased
    page.keyboard.press("Delete")  # clear
    assert _ink(page) == 0
    page.keyboard.press("Control+z")
    assert _ink(page) == erased

    page.keyboard.press("p")
    page.click("#clear")

    def pen_stroke(pressure: float) -> int:
        page.evaluate("""(pressure) => {
            const c = document.getElementById('canvas'), r = c.getBoundingClientRect();
            const at = (f, type) => c.dispatchEvent(new PointerEvent(type, {pointerId: 7, pointerType: 'pen', pressure,
                clientX: r.left + f * r.width, clientY: r.top + r.height / 2, bubbles: true, isPrimary: true}));
            at(0.2, 'pointerdown'); for (let f = 0.2; f <= 0.8; f += 0.05) at(f, 'pointermove'); at(0.8, 'pointerup');
        }""", pressure)
        ink = _ink(page)
        page.click("#clear")
        return ink

    assert pen_stroke(1.0) > 1.5 * pen_stroke(0.1)  # a pen pressed harder draws a wider line
    assert not page.errors


def test_upload_template_and_readable_errors(browser, demo: Demo, tmp_path: Path) -> None:
    page = _page(browser, demo)
    # a blank canvas is refused with the API's own sentence, and a faint template does not count as ink
    page.click("#template-example")
    page.wait_for_function("document.getElementById('template').naturalWidth > 0", timeout=TIMEOUT_MS)
    assert page.locator("#template").is_visible() and _ink(page) == 0
    page.click("#search")
    message = _error(page)
    assert "422" in message and "blank" in message
    assert page.locator("#grid .hit").count() == 0 and page.locator("#canvas").is_visible()

    # an uploaded sketch picture is searched like a drawing
    picture = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(picture).ellipse((40, 30, 260, 250), outline=0, width=4)
    ImageDraw.Draw(picture).ellipse((130, 60, 170, 140), outline=0, width=4)
    sketch = tmp_path / "sketch.png"
    picture.save(sketch)
    page.click("#error-close")
    page.set_input_files("#upload", str(sketch))
    page.wait_for_selector("#canvas[data-items='1']")  # the picture is decoded asynchronously
    assert _ink(page) > 0
    page.click("#search")
    page.wait_for_selector("#grid .hit", timeout=TIMEOUT_MS)
    assert page.locator("#error").is_hidden()

    # a picture larger than the service takes: 413, said as a sentence
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(noise)
    assert noise.stat().st_size > UPLOAD_LIMIT
    page.set_input_files("#upload", str(noise))
    page.wait_for_selector("#canvas[data-items='2']")
    page.click("#search")
    assert "413" in _error(page)

    # a bad key: 401 and what to do about it
    bad = _page(browser, demo, key="s2m_0000_not-a-key")
    draw_throat(bad)
    bad.click("#search")
    message = _error(bad)
    assert "401" in message and "API key" in message
    assert bad.locator("#results").is_visible()
    assert not page.errors and not bad.errors


def test_tablet_width(browser, demo: Demo, tmp_path: Path) -> None:
    page = _page(browser, demo, viewport=TABLET)
    _fits(page, TABLET["width"])
    page.fill("#k", "8")
    draw_throat(page)
    page.wait_for_function("document.querySelectorAll('#preview-hits li img[src^=blob]').length === 10", timeout=TIMEOUT_MS)
    page.click("#search")
    page.wait_for_selector("#grid .hit", timeout=TIMEOUT_MS)
    page.wait_for_function("[...document.querySelectorAll('#grid .hit img')].every(i => i.naturalWidth > 0)")
    _fits(page, TABLET["width"])
    screenshot(page, "sketch_pad_tablet.png", tmp_path, full_page=True)

    # filters narrow the results: one diagnosis, study dates from 2021 on
    shown = page.get_attribute("#grid", "data-query-id")
    page.click("#filters summary")
    page.fill("#f-diagnosis", "normal")
    page.fill("#f-from", "2021-01-01")
    page.click("#search")
    page.wait_for_function(f"document.getElementById('grid').dataset.queryId !== '{shown}'", timeout=TIMEOUT_MS)
    metas = page.locator("#grid .hit .meta").all_text_contents()
    assert metas and all(meta.startswith("normal · ") and meta[-10:] >= "2021-01-01" for meta in metas)


def test_plain_words_a_saved_search_forgotten_and_a_recent_search_reopened(browser, demo: Demo) -> None:
    """Each case says in words how close it is (scores behind a toggle); a search is saved, listed
    under its name and forgotten; the recent searches list it and reopen it, as does its link. Marking,
    Refine and reopening a saved search run in the whole loop (tests/api/test_ohif_viewer.py, with the viewer)."""
    page = _page(browser, demo)
    page.fill("#k", "8")
    draw_throat(page)
    page.click("#search")
    page.wait_for_selector("#grid .hit", timeout=TIMEOUT_MS)
    cards = page.locator("#grid .hit")
    sentences = cards.locator(".similarity").all_text_contents()
    assert len(sentences) == 8 and all("archive cases" in text or "typical" in text for text in sentences)
    assert not any(re.fullmatch(r"-?\d+\.\d+", text.strip()) for text in sentences)  # words, not "-3.760"
    first_score = cards.first.locator("details.scores .score")
    assert not first_score.is_visible()
    cards.first.locator("details.scores summary").click()
    assert first_score.is_visible() and re.fullmatch(r"-?\d+\.\d{3}", first_score.text_content() or "")
    assert page.locator("#detail").is_hidden()  # opening the scores opens no detail view
    assert page.locator("#refine-search").is_disabled()  # nothing marked yet

    page.fill("#save-name", "  ")
    page.click("#save-search")
    assert "name" in _error(page)
    page.fill("#save-name", "two tonsils")
    page.click("#save-search")
    saved = page.locator("#saved-list li")
    saved.first.wait_for(timeout=TIMEOUT_MS)
    assert saved.count() == 1 and saved.first.locator("button.reopen").text_content() == "two tonsils"
    saved.first.locator("button.forget").click()
    page.wait_for_selector("#saved-empty:not([hidden])", timeout=TIMEOUT_MS)
    assert saved.count() == 0

    # the recent searches: newest first, with its sketch and top three; reopened from the list, and by its link
    query_id, shown = page.get_attribute("#grid", "data-query-id"), _shown(page)
    page.reload()  # the key stays for the browser session; the list comes from the service
    page.click("#history summary")
    item = page.locator(f"#history-list li[data-query-id='{query_id}']")
    item.wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#history-list li").first.get_attribute("data-query-id") == query_id  # previews are not listed
    assert all(f"#{rank} case {case}" in (item.locator(".about").text_content() or "") for rank, case in enumerate(shown[:3], 1))
    page.wait_for_function(f"document.querySelector(\"#history-list li[data-query-id='{query_id}'] img.thumb\").naturalWidth > 0",
                           timeout=TIMEOUT_MS)
    item.locator("button.reopen").click()
    page.wait_for_function(f"document.getElementById('grid').dataset.queryId === '{query_id}'", timeout=TIMEOUT_MS)
    assert _shown(page) == shown
    page.wait_for_function("[...document.querySelectorAll('#steps-row img')].length >= 2"
                           " && [...document.querySelectorAll('#steps-row img')].every(i => i.naturalWidth > 0)", timeout=TIMEOUT_MS)
    page.goto(f"{demo.url}{item.locator('a.link').get_attribute('href')}")  # ?query=ID: reopened as the pad loads
    page.wait_for_function(f"document.getElementById('grid').dataset.queryId === '{query_id}'", timeout=TIMEOUT_MS)
    assert _shown(page) == shown
    assert not page.errors


def _shown(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.evaluate("[...document.querySelectorAll('#grid .hit')].map(e => e.dataset.imageId)")


def _signs_shown(page, signs: dict) -> str:  # type: ignore[no-untyped-def]
    """Wait until the generated picture is the one with exactly `signs` applied; its pixels as a data URL."""
    page.wait_for_function("""(want) => { const shown = document.getElementById('signs-picture').dataset.signs;
        const got = JSON.parse(shown || 'null'), names = Object.keys(want);
        return got !== null && names.length === Object.keys(got).length && names.every(n => Math.abs(got[n] - want[n]) < 1e-6); }""",
                           arg=signs, timeout=TIMEOUT_MS)
    return page.evaluate("""() => { const i = document.getElementById('signs-picture'), c = document.createElement('canvas');
        c.width = i.naturalWidth; c.height = i.naturalHeight; c.getContext('2d').drawImage(i, 0, 0); return c.toDataURL(); }""")


def test_signs_panel_previews_each_sign_and_searches_with_the_signs(browser, demo: Demo, tmp_path: Path) -> None:
    page = _page(browser, demo)
    rows = page.locator("#signs-list .sign")
    rows.first.wait_for(timeout=TIMEOUT_MS)
    known = httpx.get(f"{demo.url}v1/signs", headers={"Authorization": f"Bearer {demo.key}"}).json()
    assert [row.get_attribute("data-sign") for row in rows.all()] == [sign["name"] for sign in known["signs"]]
    sliders = page.locator("#signs-list .sign-strength")
    assert [(float(s.get_attribute("min")), float(s.get_attribute("max"))) for s in sliders.all()] == [
        (sign["min"], sign["max"]) for sign in known["signs"]]  # each slider spans the range the service allows
    assert sliders.first.is_disabled() and rows.first.locator("output").text_content() == "off"
    draw_throat(page)
    plain = _signs_shown(page, {})  # the picture follows the drawing
    generated: list[str] = []
    page.on("request", lambda request: generated.append(request.url) if request.url.endswith("/v1/generate") else None)
    rows.first.locator(".sign-on").check()  # "present": the bundle chose nothing, so 1
    first = known["signs"][0]
    with_sign = _signs_shown(page, {first["name"]: first["present"]})
    assert with_sign != plain, "the sign changes the generated picture"
    before = len(generated)
    for _ in range(6):  # six quick steps down: one picture after the pause, not six
        sliders.first.press("ArrowLeft")
    weaker = _signs_shown(page, {first["name"]: 0.7})
    assert weaker not in (plain, with_sign) and len(generated) - before == 1
    second = known["signs"][1]  # ruled out: "absent" is minus the strength chosen for it (the bundle chose nothing: -1)
    rows.nth(1).locator(".sign-absent").click()
    assert rows.nth(1).locator("output").text_content() == "absent 1.00" and second["absent"] == -1.0
    without = _signs_shown(page, {first["name"]: 0.7, second["name"]: -1.0})
    assert without not in (plain, with_sign, weaker)
    screenshot(page, "sketch_pad_signs.png", tmp_path, selector="#signs-panel")
    with page.expect_response(lambda response: response.url.endswith("/v1/search")) as answered:
        page.click("#search")
    applied = answered.value.json()["signs"]  # the service applied what the panel sent (Chromium hides multipart bodies)
    assert [(one["sign"], one["strength"]) for one in applied] == [(first["name"], 0.7), (second["name"], -1.0)]
    page.wait_for_function("document.getElementById('results-title').textContent.includes(' with ')", timeout=TIMEOUT_MS)
    assert f"with {first['name'].replace('_', ' ')} 0.70, no {second['name'].replace('_', ' ')} (1.00)" in (
        page.text_content("#results-title") or "")
    assert not page.errors
    page.close()


def test_patient_view_shows_the_picture_large_with_the_sliders_and_asks_for_no_archive_data(browser, demo: Demo,
                                                                                              tmp_path: Path) -> None:
    page = _page(browser, demo, viewport={"width": 900, "height": 820})
    draw_throat(page)
    page.click("#search")
    page.wait_for_selector("#grid .hit", timeout=TIMEOUT_MS)  # the clinician's results are on the page
    page.locator("#signs-list .sign").first.wait_for(timeout=TIMEOUT_MS)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.click("#patient-toggle")
    first = page.locator("#signs-list .sign").first
    first.locator(".sign-on").check()
    name = first.get_attribute("data-sign") or ""
    _signs_shown(page, {name: 1.0})
    for _ in range(2):
        first.locator(".sign-strength").press("ArrowLeft")
    _signs_shown(page, {name: 0.9})
    assert page.locator("#signs-picture").bounding_box()["width"] >= 400 and first.locator(".sign-strength").is_visible()
    for archive_part in ("#grid", "#results", "#preview", "#saved", "#canvas", "#key-form", "#template-example"):
        assert page.locator(archive_part).is_hidden(), archive_part
    shown = page.inner_text("body")
    assert "case" not in shown.lower() and not re.search(r"\d{4}-\d{2}-\d{2}|#\d", shown), shown
    paths = {url.removeprefix(demo.url.rstrip("/")) for url in requests if not url.startswith("blob:")}  # blob: is in-page
    assert paths == {"/v1/generate"}, paths  # pictures only: no search, case, thumbnail or saved search
    screenshot(page, "sketch_pad_patient_view.png", tmp_path)
    page.click("#patient-toggle")
    assert page.locator("#grid").is_visible() and page.locator("#canvas").is_visible()
    page.wait_for_function("document.getElementById('signs-state').textContent !== '…'", timeout=TIMEOUT_MS)
    assert not page.errors
    page.close()  # no picture left in flight when the server is stopped


def test_demo_stops_cleanly_on_ctrl_c(demo: Demo) -> None:
    """Last in the module: Ctrl-C ends the demo's server with exit status 0 and no traceback."""
    demo.process.send_signal(signal.SIGINT)
    rest, _ = demo.process.communicate(timeout=30)
    assert demo.process.returncode == 0, rest
    assert "Traceback" not in rest, rest[rest.index("Traceback") - 300:]  # the server's log from the request that failed
    assert "server stopped" in rest, rest
