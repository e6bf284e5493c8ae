"""Data loss under concurrency: two ingests at once, orphan removal racing an ingest, a failed batch
whose file another process's committed row needs. Real processes, real database, real files."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archive_faults import archive_env, s2m_command
from indexing import integrity, store
from indexing.archive import Archive
from indexing.filestore import FileStore
from indexing.ingest.decode import encode_png, pixel_digest
from indexing.ingest.run import ingest_path

RACE_IMAGES = 48
SIDE = 12


@pytest.fixture
def race_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(RACE_IMAGES):
        pixels = np.random.default_rng(n).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{n:03d}.png")
    return folder


def _ingest_process(archive: Archive, folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        s2m_command("archive", "ingest", str(folder), "--no-progress"),
        env=archive_env(archive), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _assert_whole(archive: Archive, images: int) -> None:
    report = integrity.check_archive(archive)
    assert report.ok, report
    with archive.sessions() as session:
        assert len(store.list_images(session, limit=10 * images)) == images


def test_two_ingest_processes_at_once_keep_every_file(archive: Archive, race_folder: Path) -> None:
    processes = [_ingest_process(archive, race_folder) for _ in range(2)]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    added = [int(output.split("added ")[1].split()[0]) for output in outputs]
    assert sum(added) == RACE_IMAGES, outputs  # every image added once, by one of them
    _assert_whole(archive, RACE_IMAGES)

    rerun = _ingest_process(archive, race_folder)
    output = rerun.communicate(timeout=60)[0]
    assert rerun.returncode == 0 and f"added 0 images (0 annotations), {RACE_IMAGES} already" in output, output


def test_orphan_removal_racing_an_ingest_removes_no_file_in_flight(archive: Archive, race_folder: Path) -> None:
    process = _ingest_process(archive, race_folder)
    sweeps = 0
    while process.poll() is None:
        removed = integrity.remove_orphans(archive)
        assert removed == [], removed  # nothing here is an orphan: every file is in flight or committed
        sweeps += 1
    output = process.communicate()[0]
    assert process.returncode == 0, output
    assert sweeps > 1
    _assert_whole(archive, RACE_IMAGES)
    again = ingest_path(archive, race_folder)
    assert (again.added, again.already_present) == (0, RACE_IMAGES)


@dataclass(frozen=True)
class LockstepFileStore(FileStore):
    """Two ingests meet at their first write: both find the file absent and both write it, the race
    that let the loser's rollback delete the file of the winner's committed row."""

    barrier: threading.Barrier = field(default_factory=lambda: threading.Barrier(2, timeout=30))
    met: set[int] = field(default_factory=set)

    def put(self, sha256: str, data: bytes, replace: bool = False) -> tuple[str, bool]:
        if threading.get_ident() not in self.met:
            self.met.add(threading.get_ident())
            self.barrier.wait()
        return super().put(sha256, data, replace)


def test_two_ingests_in_lockstep_both_write_a_file_and_the_loser_keeps_it(archive: Archive, race_folder: Path) -> None:
    lockstep = replace(archive, files=LockstepFileStore(archive.files.root))
    reports: list[object] = []
    threads = [threading.Thread(target=lambda: reports.append(ingest_path(lockstep, race_folder))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(reports) == 2, "both ingests finish (the loser retries its batch)"
    assert sum(r.added for r in reports) == RACE_IMAGES  # type: ignore[attr-defined]
    _assert_whole(archive, RACE_IMAGES)


@dataclass(frozen=True)
class RacedFileStore(FileStore):
    """On its second write, another process commits a row for the pixels of the first write (as a
    concurrent ingest of the same photo would), then this batch fails."""

    sessions: object = None
    first: list[tuple[str, bytes]] = field(default_factory=list)

    def put(self, sha256: str, data: bytes, replace: bool = False) -> tuple[str, bool]:
        if self.first:
            other_sha, _ = self.first[0]
            with self.sessions() as other:  # type: ignore[operator]
                store.add_images(other, [(store.NewImage(other_sha, self.relative_path(other_sha), SIDE, SIDE, "folder"), [])])
                other.commit()
            raise OSError("injected failure after another ingest committed a row for a file this batch wrote")
        self.first.append((sha256, data))
        return super().put(sha256, data, replace)


def test_a_failed_batch_keeps_a_file_that_another_committed_row_needs(archive: Archive, race_folder: Path) -> None:
    raced = replace(archive, files=RacedFileStore(archive.files.root, sessions=archive.sessions))
    with pytest.raises(OSError, match="injected failure"):
        ingest_path(raced, race_folder)
    _assert_whole(archive, 1)  # the other process's row still has its file


@dataclass(frozen=True)
class PausedFileStore(FileStore):
    """Writes its first file, then waits (a batch in flight, its rows not yet committed)."""

    written: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)

    def put(self, sha256: str, data: bytes, replace: bool = False) -> tuple[str, bool]:
        result = super().put(sha256, data, replace)
        if not self.written.is_set():
            self.written.set()
            assert self.resume.wait(30)
        return result


def test_orphan_removal_waits_for_the_batch_in_flight(archive: Archive, race_folder: Path) -> None:
    paused = PausedFileStore(archive.files.root)
    ingest = threading.Thread(target=ingest_path, args=(replace(archive, files=paused), race_folder))
    ingest.start()
    assert paused.written.wait(30)
    removed: list[list[str]] = []
    sweep = threading.Thread(target=lambda: removed.append(integrity.remove_orphans(archive)))
    sweep.start()
    time.sleep(0.5)
    assert sweep.is_alive(), "orphan removal must wait while a batch holds files without committed rows"
    paused.resume.set()
    ingest.join(60)
    sweep.join(60)
    assert removed == [[]]
    _assert_whole(archive, RACE_IMAGES)


def test_check_finds_damaged_and_half_written_files_and_repair_restores_them(archive: Archive, race_folder: Path) -> None:
    ingest_path(archive, race_folder)
    with archive.sessions() as session:
        rows = store.list_images(session, limit=RACE_IMAGES)
    truncated, deleted = archive.files.absolute(rows[0].stored_path), archive.files.absolute(rows[1].stored_path)
    truncated.write_bytes(truncated.read_bytes()[:40])
    deleted.unlink()
    stale = truncated.parent / ".tmp-killed.png"
    stale.write_bytes(b"half")

    report = integrity.check_archive(archive)
    assert report.damaged_files == [rows[0].stored_path]
    assert report.missing_files == [rows[1].stored_path]
    assert report.temporary_files == [stale.relative_to(archive.files.root).as_posix()]

    repaired = integrity.repair(archive, race_folder)
    assert repaired.restored == sorted([rows[0].stored_path, rows[1].stored_path]) and repaired.still_missing == []
    assert integrity.remove_orphans(archive) == [stale.relative_to(archive.files.root).as_posix()]
    assert integrity.check_archive(archive).ok


def test_reingest_restores_a_file_its_row_lost(archive: Archive, race_folder: Path) -> None:
    ingest_path(archive, race_folder)
    with archive.sessions() as session:
        row = store.list_images(session, limit=1)[0]
    pixels = np.asarray(Image.open(archive.files.absolute(row.stored_path)))
    archive.files.absolute(row.stored_path).unlink()
    again = ingest_path(archive, race_folder)
    assert (again.added, again.already_present, again.restored) == (0, RACE_IMAGES, 1)
    assert pixel_digest(np.asarray(Image.open(archive.files.absolute(row.stored_path)))) == row.sha256
    assert encode_png(pixels) == archive.files.absolute(row.stored_path).read_bytes()
    assert integrity.check_archive(archive).ok
