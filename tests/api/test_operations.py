"""The procedures of docs/operations.md, run as an operator runs them: the backup-and-restore drill
under search load (SQLite and the real PostgreSQL) and one rate limit shared by two app instances
on one PostgreSQL database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from indexing.settings import Settings
from tests.api.conftest import contour_png, keys, run_s2m, running, service_settings
from tests.indexing.conftest import empty_target

SKETCH = "000003"


def _search(url: str, key: str, sketch: bytes) -> list[tuple[int, float, str]]:
    response = httpx.post(f"{url}/v1/search", headers={"Authorization": f"Bearer {key}"}, timeout=120,
                          files={"sketch": ("s.png", sketch, "image/png")}, data={"k": "6"})
    assert response.status_code == 200, response.text
    return [(hit["image_id"], hit["score"], hit["patient_pseudonym"]) for hit in response.json()["results"]]


@contextmanager
def _search_load(url: str, key: str, sketch: bytes) -> Iterator[list[tuple[float, float, int]]]:
    """Searches one after another on a thread while the block runs; yields their (start, end, status)."""
    done: list[tuple[float, float, int]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
            while not stop.is_set():
                started = time.monotonic()
                status = client.post("/v1/search", files={"sketch": ("s.png", sketch)}, data={"k": "3"}).status_code
                done.append((started, time.monotonic(), status))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(timeout=120)


def test_backup_under_search_load_restores_elsewhere_to_the_same_ranking(served_archive: Settings, phantom_archive: Path,
                                                                          tmp_path: Path) -> None:
    search, _ = keys(served_archive)
    sketch = contour_png(phantom_archive, SKETCH)
    with running(service_settings(served_archive, tmp_path / "live")) as url:
        before = _search(url, search, sketch)
        with _search_load(url, search, sketch) as load:
            while not load:  # the load is running before the backup starts
                time.sleep(0.05)
            started = time.monotonic()
            backed = run_s2m(served_archive, "archive", "backup", str(tmp_path / "backup"))
            finished = time.monotonic()
            time.sleep(0.5)
    assert backed.returncode == 0, backed.stderr
    assert "backed up 16 images" in backed.stdout
    during = [status for start, end, status in load if start < finished and end > started]
    assert during and set(status for _, _, status in load) == {200}  # searches overlapped the backup, none failed
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["active_build_id"] is not None and manifest["pseudonym_key"] == "environment"
    assert any(name.endswith(".faiss") for name in manifest["files"]) and any(name.endswith(".npz") for name in manifest["files"])

    with empty_target(served_archive, tmp_path / "elsewhere") as target:
        restored = run_s2m(target, "archive", "restore", str(tmp_path / "backup"))
        assert restored.returncode == 0, restored.stderr
        checked = run_s2m(target, "archive", "check")
        assert checked.returncode == 0 and "archive consistent" in checked.stdout, checked.stdout + checked.stderr
        with running(service_settings(target, tmp_path / "restored")) as url:
            after = _search(url, search, sketch)  # the API keys came back with the database
    assert [hit[0] for hit in after] == [hit[0] for hit in before] and len(before) == 6
    assert [hit[1] for hit in after] == pytest.approx([hit[1] for hit in before], abs=1e-5)
    assert [hit[2] for hit in after] == [hit[2] for hit in before]  # the same pseudonyms


@pytest.mark.parametrize("served_archive", ["postgresql"], indirect=True)
def test_two_app_instances_on_one_postgresql_share_each_keys_rate_limit(served_archive: Settings, tmp_path: Path) -> None:
    limit = 5
    settings = service_settings(served_archive, tmp_path, rate_limit_per_minute=1, rate_limit_burst=limit)
    first, second = keys(served_archive)
    with running(settings) as one, running(settings) as two:

        def fetch(index: int) -> httpx.Response:
            url = (one, two)[index % 2]
            return httpx.get(f"{url}/v1/images/example", headers={"Authorization": f"Bearer {first}"}, timeout=60)

        with ThreadPoolExecutor(max_workers=8) as pool:  # at once, on both instances, so takes race
            answers = list(pool.map(fetch, range(4 * limit)))
        other = httpx.get(f"{two}/v1/images/example", headers={"Authorization": f"Bearer {second}"}, timeout=60)
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == limit and statuses.count(429) == 3 * limit  # one bucket, not one per instance
    refused = [answer for answer in answers if answer.status_code == 429]
    assert all(1 <= int(answer.headers["Retry-After"]) <= 60 and "rate limit" in answer.json()["error"] for answer in refused)
    assert other.status_code == 200  # another key has its own bucket


def _patients(settings: Settings) -> dict[str, str]:
    """Each archived image's SOP UID -> the pseudonym stored for its patient."""
    from indexing import store
    from indexing.archive import Archive

    archive = Archive.open(settings)
    try:
        with archive.sessions.begin() as session:
            return {row.sop_uid: row.patient_ref for row in store.list_images(session)}
    finally:
        archive.close()


def _ranked(settings: Settings, sketch: Path, *options: str) -> list[tuple[str, float]]:
    searched = run_s2m(settings, "search", str(sketch), "--k", "8", "--json", *options)
    assert searched.returncode == 0, searched.stderr
    return [(hit["sop_uid"], hit["score"]) for hit in json.loads(searched.stdout)[0]["hits"]]


def test_rotating_the_pseudonym_key_rebuilds_the_archive_with_new_pseudonyms_for_the_same_patients(
        served_archive: Settings, phantom_archive: Path, tmp_path: Path) -> None:
    """docs/operations.md, "Key rotation": a new, empty archive under the new key, the sources ingested
    again, a new index build; the old archive is left as it was."""
    from phantoms.reader import read_metadata

    rotated = Settings(data_dir=tmp_path / "rotated", database_url=f"sqlite:///{tmp_path / 'rotated.sqlite3'}",
                       pseudonym_key=b"the-rotated-pseudonym-key")
    for step in (("db", "upgrade"), ("archive", "ingest", str(phantom_archive)), ("index", "build", "--no-progress")):
        done = run_s2m(rotated, *step)
        assert done.returncode == 0, done.stderr
    old, new = _patients(served_archive), _patients(rotated)
    assert old.keys() == new.keys() and None not in {*old.values(), *new.values()}
    assert not set(old.values()) & set(new.values())  # every pseudonym changed with the key
    renamed = {old[uid]: new[uid] for uid in old}  # the same images belong to one patient as before:
    assert all(renamed[old[uid]] == new[uid] for uid in old) and len(set(renamed.values())) == len(renamed)
    sketch = tmp_path / "sketch.png"
    sketch.write_bytes(contour_png(phantom_archive, SKETCH))
    assert _ranked(rotated, sketch) == _ranked(served_archive, sketch)  # the same cases, the same scores
    # a patient named by their ID is found under the new key: excluding them drops exactly their images
    row = next(iter(read_metadata(phantom_archive)))
    theirs = {uid for uid, ref in new.items() if ref == new[row["sop_uid"]]}
    kept = {uid for uid, _ in _ranked(rotated, sketch, "--filter", f"exclude-patient={row['patient_id']}")}
    assert theirs and not kept & theirs and len(kept) == min(8, len(new) - len(theirs))
    assert _patients(served_archive) == old  # the old archive is untouched
