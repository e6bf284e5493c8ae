"""Bad input and everyday faults: one sentence, the right exit code, and nothing changed.

Each case runs the real CLI (in process, or as a real process where permissions matter) against
the real database and file store, and compares row counts and files before and after.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from sqlalchemy import text
from typer.testing import CliRunner

from api.cli import app
from archive_faults import archive_env, one_line_error, png_claiming, s2m_command, take_snapshot
from indexing import store
from indexing.archive import Archive
from indexing.db import describe
from indexing.models import Embedding
from indexing.ingest.run import ingest_path
from indexing.settings import Settings

# pycocotools' encode warns under numpy 2 (outside this project)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIDE = 16


def _photo(seed: int, side: int = SIDE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def _folder(root: Path, count: int, side: int = SIDE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        Image.fromarray(_photo(n, side)).save(root / f"{n}.png")
    return root


def _s2m(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


def _labels(archive: Archive) -> dict[str, dict]:  # type: ignore[type-arg]
    with archive.sessions() as session:
        return {row.case_ref or str(row.id): row.labels for row in store.list_images(session, limit=100)}


# --- the pseudonym key -------------------------------------------------------------------------


def test_the_key_is_written_whole_once_even_by_racing_first_ingests(tmp_path: Path) -> None:
    settings = Settings.from_env({"S2M_DATA_DIR": str(tmp_path)})
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(settings.resolve_pseudonym_key())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pseudonym.key"]  # no temporary left behind
    assert stat.S_IMODE((tmp_path / "pseudonym.key").stat().st_mode) == 0o600


def test_a_lost_key_is_refused_when_the_archive_has_rows(archive: Archive, tmp_path: Path) -> None:
    env = archive_env(archive)
    del env["S2M_PSEUDONYM_KEY"]  # the key lives in the data dir
    folder = _folder(tmp_path / "in", 2)
    assert _s2m(env, "archive", "ingest", str(folder), "--no-progress").exit_code == 0
    key_file = archive.settings.data_dir / "pseudonym.key"
    key_file.unlink()
    _folder(tmp_path / "more", 0)
    Image.fromarray(_photo(7)).save(tmp_path / "more" / "7.png")
    before = take_snapshot(archive)

    refused = _s2m(env, "archive", "ingest", str(tmp_path / "more"), "--no-progress")
    assert refused.exit_code == 2
    line = one_line_error(refused.output)
    assert "pseudonym key" in line and "restore" in line and "2 images" in line
    assert take_snapshot(archive) == before and not key_file.exists()


# --- privacy -----------------------------------------------------------------------------------


IDENTIFYING_CSV = (
    "file,case_id,patient_id,diagnosis,tonsil_grade,born,nhs_number,social_security,tel,geburtsdatum,ward\n"
    "0.png,C-0,MRN-5551,pharyngitis,2,1961-04-12,943 476 5919,078-05-1120,+44 20 7946 0958,12.04.1961,ENT-3\n"
    "1.png,C-1,MRN-5552,tonsillitis,3,1975-09-30,943 476 5920,078-05-1121,+44 20 7946 0959,30.09.1975,ENT-4\n"
)
IDENTIFIERS = (
    "MRN-5551", "MRN-5552", "1961-04-12", "943 476 5919", "078-05-1120", "7946 0958", "12.04.1961",
    "1975-09-30", "Doe^Jane", "Doe", "MRN-0001", "19700101",
)


def test_only_known_columns_are_kept_and_the_dropped_names_are_reported(archive: Archive, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", 2)
    csv = tmp_path / "meta.csv"
    csv.write_text(IDENTIFYING_CSV)
    result = _s2m(archive_env(archive), "archive", "ingest", str(folder), "--metadata", str(csv), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "not kept (use --keep-column NAME to keep one): born, geburtsdatum, nhs_number, social_security, tel, ward" in result.output
    assert not any(identifier in result.output for identifier in IDENTIFIERS)
    assert _labels(archive) == {"C-0": {"tonsil_grade": 2}, "C-1": {"tonsil_grade": 3}}

    other = _folder(tmp_path / "other", 3)
    csv.write_text("file,case_id,ward,born\n2.png,C-2,ENT-3,1961-04-12\n")
    again = _s2m(archive_env(archive), "archive", "ingest", str(other), "--metadata", str(csv), "--keep-column", "ward", "--no-progress")
    assert again.exit_code == 0 and "not kept (use --keep-column NAME to keep one): born" in again.output
    assert _labels(archive)["C-2"] == {"ward": "ENT-3"}


def test_an_ingest_of_identifying_metadata_leaves_no_identifier_anywhere(
    archive: Archive, tmp_path: Path, write_dicom, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    folder = _folder(tmp_path / "in", 3)
    write_dicom(folder / "scan.dcm", _photo(9), patient_name="Doe^Jane", patient_id="MRN-0001")
    csv = tmp_path / "meta.csv"
    # line 4: an identifier in a value too long for its column, so the row is refused (and must not be echoed)
    csv.write_text(IDENTIFYING_CSV + f"2.png,C-2,MRN-5551,{'943 476 5919 ' * 12},1,1961-04-12,,,,,\n")
    caplog.set_level("DEBUG")
    result = _s2m(archive_env(archive), "archive", "ingest", str(folder), "--metadata", str(csv), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "skipped 2.png: meta.csv line 4: diagnosis is longer than 128 characters" in result.output

    dump = []
    with archive.engine.connect() as connection:
        tables = [row[0] for row in connection.execute(text(
            "SELECT name FROM sqlite_master WHERE type='table'" if archive.engine.dialect.name == "sqlite"
            else "SELECT tablename FROM pg_tables WHERE schemaname='public'"
        ))]
        for table in tables:
            dump.extend(repr(tuple(row)) for row in connection.execute(text(f"SELECT * FROM {table}")))
    files = b"".join(p.read_bytes() for p in archive.settings.data_dir.rglob("*") if p.is_file())
    everything = "\n".join(dump) + result.output + caplog.text + files.decode("latin-1")
    found = [identifier for identifier in IDENTIFIERS if identifier in everything]
    assert found == []
    assert "pharyngitis" in everything and "C-1" in everything  # the scan did see the rows


@pytest.mark.postgres
def test_a_database_refusal_is_reported_without_row_values(
    postgres_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Validation off, PostgreSQL refuses the NUL byte itself: the error names the batch, not the data."""
    from indexing.db import make_engine, upgrade

    engine = make_engine(postgres_database)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    engine.dispose()
    settings = Settings(tmp_path / "data", postgres_database, pseudonym_key=b"k", ingest_batch_size=4)
    archive = Archive.open(settings)
    try:
        monkeypatch.setattr(store, "record_problem", lambda record: None)
        folder = _folder(tmp_path / "in", 2)
        csv = tmp_path / "meta.csv"
        csv.write_text("file,case_id,diagnosis\n0.png,C-0,Smith^John MRN-5551\x00 1961-04-12\n")
        caplog.set_level("DEBUG")
        result = _s2m(archive_env(archive), "archive", "ingest", str(folder), "--metadata", str(csv), "--no-progress")
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        line = one_line_error(result.output)
        assert "ingest batch 1 (0.png .. 1.png) failed in the database" in line
        assert not any(value in result.output + caplog.text for value in ("Smith", "MRN-5551", "1961-04-12"))
        assert take_snapshot(archive).rows["images"] == 0
        assert list(archive.files.stored_paths()) == []
    finally:
        archive.close()


# --- validation --------------------------------------------------------------------------------


def test_rows_a_database_would_refuse_are_skipped_by_line_on_both_databases(archive: Archive, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", 7)
    csv = tmp_path / "meta.csv"
    rows = [
        "0.png,C-0,pharyngitis,2,2024-01-02",
        "1.png,C-1," + "x" * 129 + ",2,2024-01-02",
        "2.png,C-2\x00,pharyngitis,2,2024-01-02",
        "3.png,C-3,pharyngitis,nan,2024-01-02",
        "4.png,C-4,pharyngitis,-inf,2024-01-02",
        "5.png,C-5,pharyngitis,2,02/01/2024",
        "6.png,C-6,pharyngitis,2,2024-01-02",
    ]
    csv.write_text("file,case_id,diagnosis,tonsil_grade,study_date\n" + "\n".join(rows) + "\n")
    report = ingest_path(archive, folder, metadata_csv=csv)
    assert report.added == 2
    assert dict(report.skipped) == {
        "1.png": "meta.csv line 3: diagnosis is longer than 128 characters",
        "2.png": "meta.csv line 4: case_ref contains a NUL byte",
        "3.png": "meta.csv line 5: label tonsil_grade is not a finite number",
        "4.png": "meta.csv line 6: label tonsil_grade is not a finite number",
        "5.png": "meta.csv line 7: the date is not YYYY-MM-DD or YYYYMMDD",
    }
    csv.write_text("file,case_id,diagnosis,tonsil_grade,study_date\n" + "\n".join(f"{n}.png,C-{n},pharyngitis,2,2024-01-02" for n in range(7)) + "\n")
    rerun = ingest_path(archive, folder, metadata_csv=csv)
    assert (rerun.added, rerun.already_present, rerun.skipped) == (5, 2, [])
    assert set(_labels(archive)) == {f"C-{n}" for n in range(7)}


def _coco(images: dict[str, tuple[int, int]], annotations: list[dict]) -> dict:  # type: ignore[type-arg]
    ids = {name: number for number, name in enumerate(images, start=1)}
    return {
        "images": [{"id": ids[name], "file_name": name, "height": h, "width": w} for name, (h, w) in images.items()],
        "annotations": [{**a, "id": n, "image_id": ids[a.pop("file")]} for n, a in enumerate(annotations, start=1)],
        "categories": [{"id": c, "name": str(c)} for c in (1, 2, 3, 4)],
    }


def _rle(side: int = SIDE, size: tuple[int, int] | None = None) -> dict:  # type: ignore[type-arg]
    mask = np.zeros(size or (side, side), dtype=np.uint8, order="F")
    mask[2:6, 3:9] = 1
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


def test_coco_annotations_are_checked_before_anything_is_stored(archive: Archive, tmp_path: Path) -> None:
    import json

    folder = _folder(tmp_path / "in", 6)
    names = [f"{n}.png" for n in range(6)]
    images = {name: (SIDE, SIDE) for name in names}
    images["5.png"] = (SIDE + 4, SIDE)  # the COCO entry claims another size than the file has
    annotations = [
        {"file": "0.png", "category_id": 1, "instance_id": 1, "segmentation": _rle()},
        {"file": "0.png", "category_id": 3, "instance_id": 2, "segmentation": _rle()},
        {"file": "1.png", "category_id": 1, "instance_id": 1, "segmentation": {"size": [SIDE, SIDE], "counts": "garbage!!"}},
        {"file": "2.png", "category_id": 9, "instance_id": 1, "segmentation": _rle()},
        {"file": "3.png", "category_id": 1, "instance_id": 1, "segmentation": _rle()},
        {"file": "3.png", "category_id": 3, "instance_id": 1, "segmentation": _rle()},
        {"file": "4.png", "category_id": 1, "instance_id": 1, "segmentation": {"size": [SIDE, SIDE], "counts": "0"}},
        {"file": "5.png", "category_id": 1, "instance_id": 1, "segmentation": _rle(size=(SIDE + 4, SIDE))},
    ]
    coco = tmp_path / "annotations.json"
    coco.write_text(json.dumps(_coco(images, annotations)))
    report = ingest_path(archive, folder, annotations_json=coco)
    reasons = dict(report.skipped)
    assert (report.added, report.annotations_added) == (1, 2)
    assert reasons["1.png"].startswith("annotations.json annotation 3 RLE does not decode")
    assert reasons["2.png"] == "annotations.json annotation 4 has category_id 9, not one of the archive's categories [1, 2, 3, 4]"
    assert reasons["3.png"] == "annotations.json annotation 6 repeats instance_id 1 of its image"
    assert reasons["4.png"] == f"annotations.json annotation 7 RLE does not decode to {SIDE}x{SIDE} pixels"
    assert reasons["5.png"] == "its annotations' mask size differs from the image"
    with archive.sessions() as session:
        (row,) = store.list_images(session)
        assert [a.instance_id for a in store.list_annotations(session, row.id)] == [1, 2]


def test_a_csv_in_another_encoding_is_one_sentence_and_changes_nothing(archive: Archive, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", 2)
    csv = tmp_path / "meta.csv"
    csv.write_bytes("file,diagnosis\n0.png,Rachenentzündung\n1.png,Mandelentzündung\n".encode("latin-1"))
    before = take_snapshot(archive)
    result = _s2m(archive_env(archive), "archive", "ingest", str(folder), "--metadata", str(csv), "--no-progress")
    assert result.exit_code == 2
    assert one_line_error(result.output) == "error: meta.csv is not UTF-8 text (line 2): save it as UTF-8 and ingest again"
    assert take_snapshot(archive) == before


def test_a_decompression_bomb_is_refused_in_one_sentence(archive: Archive, tmp_path: Path) -> None:
    bomb = png_claiming(tmp_path / "bomb.png", 20000, 20000, idat_bytes=400_000)
    before = take_snapshot(archive)
    result = _s2m(archive_env(archive), "archive", "ingest", str(bomb), "--no-progress")
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "skipped bomb.png: too large: 400000000 pixels exceeds the limit of 67108864 pixels\n" in result.output
    assert take_snapshot(archive) == before


def test_batches_are_bounded_by_pixels_not_image_count(archive_with, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    import tracemalloc

    side = 192
    folder = _folder(tmp_path / "in", 8, side=side)
    peaks = {}
    for name, pixels in (("unbounded", 10**9), ("bounded", 2 * side * side)):
        archive = archive_with(ingest_batch_size=200, ingest_batch_pixels=pixels)
        with archive.engine.begin() as connection:
            connection.execute(text("DELETE FROM images"))
        caplog.clear()
        caplog.set_level("INFO", logger="indexing.ingest.pipeline")
        tracemalloc.start()
        report = ingest_path(archive, folder)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.added == 8
        batches = [r for r in caplog.records if r.getMessage().startswith("ingest batch")]
        assert len(batches) == (1 if name == "unbounded" else 4)
    one_image = side * side * 3
    assert peaks["bounded"] < peaks["unbounded"] - 4 * one_image, peaks


# --- everyday faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("postgresql+psycopg2://postgres@127.0.0.1:5432/s2m_no_such_db",
                     'cannot use the archive database postgresql+psycopg2://postgres@127.0.0.1:5432/s2m_no_such_db: database "s2m_no_such_db" does not exist',
                     marks=pytest.mark.postgres, id="missing-database"),
        pytest.param("postgresql+psycopg2://postgres@127.0.0.1:1/test",
                     "cannot use the archive database postgresql+psycopg2://postgres@127.0.0.1:1/test: Connection refused", id="wrong-port"),
        pytest.param("mysqlx://h/db", "S2M_DATABASE_URL has an unknown or malformed scheme 'mysqlx'; use sqlite:///PATH or "
                     "postgresql+psycopg2://USER@HOST:PORT/DATABASE", id="unknown-scheme"),
        pytest.param("postgresql://postgres@127.0.0.1:5432/test", "S2M_DATABASE_URL's scheme 'postgresql' needs a database driver "
                     "that is not installed; use sqlite:///PATH or postgresql+psycopg2://USER@HOST:PORT/DATABASE",
                     id="driver-not-installed"),
    ],
)
@pytest.mark.parametrize("command", [("archive", "stats"), ("db", "status"), ("archive", "ingest", "IN", "--no-progress")])
def test_an_unusable_database_url_is_one_sentence(url: str, expected: str, command: tuple[str, ...], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    folder = _folder(tmp_path / "in", 1)
    args = [str(folder) if arg == "IN" else arg for arg in command]
    result = _s2m({"S2M_DATABASE_URL": url, "S2M_DATA_DIR": str(data_dir)}, *args)
    assert result.exit_code == 2
    assert one_line_error(result.output) == f"error: {expected}"
    assert not data_dir.exists()


def _as_unprivileged() -> list[str]:
    """Run without root's power to write read-only files (root ignores file modes)."""
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def test_a_read_only_sqlite_archive_can_be_inspected_and_refuses_writes(archive: Archive, tmp_path: Path) -> None:
    if archive.engine.dialect.name != "sqlite":
        pytest.skip("file permissions are an SQLite matter")
    folder = _folder(tmp_path / "in", 3)
    assert ingest_path(archive, folder).added == 3
    archive.close()
    data_dir = archive.settings.data_dir
    database = Path(describe(archive.engine))
    for part in database.parent.glob(database.name + "*"):  # with its -wal and -shm, if any
        part.rename(data_dir / part.name)
    database = data_dir / database.name
    archive = replace(archive, settings=replace(archive.settings, database_url=f"sqlite:///{database}"))
    before = take_snapshot(archive)
    listing = sorted(p.name for p in data_dir.iterdir())
    database.chmod(0o444)
    data_dir.chmod(0o555)
    env = archive_env(archive)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_as_unprivileged() + s2m_command(*args), env=env, capture_output=True, text=True, timeout=120)

    try:
        stats, status, listed, check = run("archive", "stats"), run("db", "status"), run("archive", "list"), run("archive", "check")
        assert stats.returncode == 0 and "images: 3 (+0 deleted)" in stats.stdout, stats.stderr
        assert status.returncode == 0 and "database: " in status.stdout, status.stderr
        assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3, listed.stderr
        assert check.returncode == 0 and "archive consistent" in check.stdout, check.stderr
        refused = run("archive", "ingest", str(_folder(tmp_path / "more", 5)), "--no-progress")
        assert refused.returncode == 2
        assert one_line_error(refused.stdout + refused.stderr) == (
            f"error: the archive database {database} is read-only; this command writes to it "
            "(read-only commands such as `s2m archive stats` and `s2m db status` still work)"
        )
    finally:
        data_dir.chmod(0o755)
        database.chmod(0o644)
    assert sorted(p.name for p in data_dir.iterdir()) == listing  # no -wal, -shm or folder created
    assert take_snapshot(archive) == before


def test_a_database_ahead_of_the_code_says_so_and_advises_no_upgrade(archive: Archive) -> None:
    with archive.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    before = take_snapshot(archive)
    env = archive_env(archive)
    for command in (("archive", "stats"), ("db", "status"), ("db", "upgrade"), ("archive", "ingest", "x", "--no-progress")):
        result = _s2m(env, *command)
        assert result.exit_code == 2, (command, result.output)
        line = one_line_error(result.output)
        assert "is at revision 9999, newer than this version of Sketch2MedI knows" in line
        assert "s2m db upgrade" not in line
    assert take_snapshot(archive) == before


def test_links_out_of_the_ingested_folder_are_skipped_with_a_reason(archive: Archive, tmp_path: Path) -> None:
    outside = _folder(tmp_path / "outside", 3)
    folder = _folder(tmp_path / "in", 1)
    (folder / "linked.png").symlink_to(outside / "1.png")
    (folder / "linked_folder").symlink_to(outside, target_is_directory=True)
    (folder / "same.png").symlink_to(folder / "0.png")  # inside: followed (and a duplicate)
    report = ingest_path(archive, folder)
    assert (report.added, report.already_present) == (1, 1)
    assert dict(report.skipped) == {
        "linked.png": "a symbolic link to outside the ingested folder: not followed",
        "linked_folder": "a symbolic link to outside the ingested folder: not followed",
    }


# --- index commands before any build ------------------------------------------------------------


def test_refresh_and_set_weights_before_a_build_are_one_sentence_and_embed_nothing(archive: Archive, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", 2)
    env = archive_env(archive)
    assert _s2m(env, "archive", "ingest", str(folder), "--no-progress").exit_code == 0
    before = take_snapshot(archive)
    for args in (("index", "refresh", "--no-progress", "--device", "cpu"), ("index", "set-weights", "1,1,1")):
        result = _s2m(env, *args)
        assert result.exit_code == 2
        assert one_line_error(result.output) == "error: the archive has no active index build: run `s2m index build` first"
    assert take_snapshot(archive) == before
    with archive.sessions() as session:
        assert session.query(Embedding).count() == 0
