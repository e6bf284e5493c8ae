"""Ingest of photo folders and DICOM files: metadata, idempotency, bad inputs, crash consistency."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archive_faults import png_claiming
from indexing import store
from indexing.archive import Archive
from indexing.filestore import FileStore
from indexing.ingest.metadata import pseudonymize
from indexing.ingest.run import ingest_path
from indexing.models import Image as ImageRow

PSEUDONYM_CHARS = 16


def _png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _rows(archive: Archive) -> list[ImageRow]:
    with archive.sessions() as session:
        return store.list_images(session, limit=1000, include_deleted=True)


def test_png_folder_with_metadata_csv_then_reingest_adds_nothing(archive: Archive, tmp_path: Path, make_photo) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "photos"
    photos = {f"case{n}.png": make_photo(n) for n in range(5)}
    for name, pixels in photos.items():
        _png(folder / name, pixels)
    Image.fromarray(make_photo(9)).save(folder / "phone.jpg", quality=95)
    csv = tmp_path / "meta.csv"
    csv.write_text(
        "file,case_id,patient_id,patient_name,study_date,diagnosis,findings,tonsil_grade\n"
        "case0.png,C-0,MRN-77,Smith^John,2023-06-01,acute tonsillitis,erythema; white exudate,3\n"
        "case1.png,C-1,MRN-77,Smith^John,20230901,pharyngitis,,1\n"
    )
    first = ingest_path(archive, folder, metadata_csv=csv)
    assert (first.added, first.already_present, first.skipped) == (6, 0, [])

    rows = {row.case_ref: row for row in _rows(archive)}
    case0 = rows["C-0"]
    assert case0.diagnosis == "acute tonsillitis"
    assert case0.findings == ["erythema", "white exudate"]
    assert case0.labels == {"tonsil_grade": 3}
    assert case0.acquired_at == datetime(2023, 6, 1, tzinfo=timezone.utc)
    assert case0.patient_ref == pseudonymize(archive.settings.pseudonym_key, "MRN-77", PSEUDONYM_CHARS)
    assert rows["C-1"].patient_ref == case0.patient_ref
    assert "MRN" not in case0.patient_ref
    stored = np.asarray(Image.open(archive.files.absolute(case0.stored_path)))
    np.testing.assert_array_equal(stored, photos["case0.png"])

    second = ingest_path(archive, folder, metadata_csv=csv)
    assert (second.added, second.already_present) == (0, 6)
    assert len(_rows(archive)) == 6
    with archive.sessions() as session:
        assert store.consistency(session, archive.files).ok
    assert len(list(archive.files.stored_paths())) == 6


def test_bad_inputs_are_skipped_with_reasons_and_nothing_else_is_lost(archive: Archive, tmp_path: Path, make_photo, write_dicom) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mixed"
    for n in range(3):
        _png(folder / f"good{n}.png", make_photo(n))
    write_dicom(folder / "good3.dcm", make_photo(3))
    truncated = (folder / "good0.png").read_bytes()
    (folder / "corrupt.png").write_bytes(truncated[: len(truncated) // 2])
    (folder / "text.png").write_text("this is a letter, not a photograph\n")
    png_claiming(folder / "bomb.png", 20000, 20000)
    write_dicom(folder / "nopixels.dcm", None)
    write_dicom(folder / "grey.dcm", make_photo(4)[..., 0], photometric="MONOCHROME2")
    write_dicom(folder / "ct.dcm", make_photo(5), sop_class="1.2.840.10008.5.1.4.1.1.2")
    (folder / "notes.txt").write_text("hello")

    report = ingest_path(archive, folder)

    reasons = dict(report.skipped)
    assert report.added == 4
    assert reasons["corrupt.png"].startswith("corrupt")
    assert reasons["text.png"].startswith("not an image")
    assert reasons["bomb.png"].startswith("too large")
    assert reasons["nopixels.dcm"] == "no pixel data in the DICOM file"
    assert reasons["grey.dcm"].startswith("unsupported photometric interpretation MONOCHROME2")
    assert reasons["ct.dcm"].startswith("unsupported SOP class")
    assert reasons["notes.txt"].startswith("unsupported file type")
    assert len(reasons) == 7
    assert {row.source for row in _rows(archive)} == {"folder", "dicom"}


def test_configured_pixel_limit_refuses_before_decoding(archive_with, tmp_path: Path, make_photo) -> None:  # type: ignore[no-untyped-def]
    small = archive_with(max_image_pixels=20 * 20)
    _png(tmp_path / "in" / "big.png", make_photo(1, size=24))
    _png(tmp_path / "in" / "ok.png", make_photo(2, size=16))
    report = ingest_path(small, tmp_path / "in")
    assert report.added == 1
    assert dict(report.skipped)["big.png"] == "too large: 24x24 pixels exceeds the limit of 400 pixels"


@dataclass(frozen=True)
class CrashingFileStore(FileStore):
    """A real file store that raises on its n-th write, as a full disk or a killed worker would."""

    crash_on_put: int = 0
    puts: list[str] = field(default_factory=list)

    def put(self, sha256: str, data: bytes) -> tuple[str, bool]:
        self.puts.append(sha256)
        if len(self.puts) == self.crash_on_put:
            raise OSError("injected crash in the middle of a batch")
        return super().put(sha256, data)


def test_crash_mid_batch_leaves_rows_and_files_consistent(archive: Archive, tmp_path: Path, make_photo) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "photos"
    for n in range(10):
        _png(folder / f"{n:02d}.png", make_photo(n))
    batch = archive.settings.ingest_batch_size
    crashing = replace(archive, files=CrashingFileStore(archive.files.root, crash_on_put=batch + 3))

    with pytest.raises(OSError, match="injected crash"):
        ingest_path(crashing, folder)

    with archive.sessions() as session:
        check = store.consistency(session, archive.files)
        assert check.ok, check
        assert len(store.list_images(session)) == batch  # the first batch committed, the second left no trace
    resumed = ingest_path(archive, folder)
    assert (resumed.added, resumed.already_present) == (10 - batch, batch)
    with archive.sessions() as session:
        assert store.consistency(session, archive.files).ok


def test_dicom_uids_dates_and_pseudonym_come_from_the_tags(archive: Archive, tmp_path: Path, make_photo, write_dicom) -> None:  # type: ignore[no-untyped-def]
    import pydicom

    rgb = write_dicom(tmp_path / "dcm" / "a.dcm", make_photo(1), patient_id="MRN-0001")
    write_dicom(tmp_path / "dcm" / "nested" / "b", make_photo(2), patient_id="MRN-0001", acquisition=None, study_date="20230102")
    report = ingest_path(archive, tmp_path / "dcm")
    assert (report.added, report.skipped) == (2, [])

    tags = pydicom.dcmread(rgb)
    with archive.sessions() as session:
        rows = {row.sop_uid: row for row in store.list_images(session)}
    row = rows[tags.SOPInstanceUID]
    assert (row.study_uid, row.series_uid, row.source) == (tags.StudyInstanceUID, tags.SeriesInstanceUID, "dicom")
    assert row.acquired_at == datetime(2024, 3, 5, 10, 15, tzinfo=timezone.utc)
    assert row.patient_ref == pseudonymize(archive.settings.pseudonym_key, "MRN-0001", PSEUDONYM_CHARS)
    np.testing.assert_array_equal(np.asarray(Image.open(archive.files.absolute(row.stored_path))), make_photo(1))
    other = next(r for sop, r in rows.items() if sop != tags.SOPInstanceUID)
    assert other.acquired_at == datetime(2023, 1, 2, 10, 15, tzinfo=timezone.utc)
    assert other.patient_ref == row.patient_ref

    again = ingest_path(archive, tmp_path / "dcm")
    assert (again.added, again.already_present) == (0, 2)


def test_no_patient_name_reaches_the_database_or_the_logs(
    archive: Archive, tmp_path: Path, make_photo, write_dicom, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    from sqlalchemy import text

    write_dicom(tmp_path / "in" / "x.dcm", make_photo(1), patient_name="Doe^Jane", patient_id="MRN-4242")
    _png(tmp_path / "in" / "y.png", make_photo(2))
    csv = tmp_path / "meta.csv"
    csv.write_text("file,patient_id,patient_name,birth_date,diagnosis\ny.png,MRN-4343,Smith^John,1970-01-01,pharyngitis\n")
    caplog.set_level("DEBUG")
    report = ingest_path(archive, tmp_path / "in", metadata_csv=csv)
    assert report.added == 2

    dump = []
    with archive.engine.connect() as connection:
        for table in ("images", "annotations", "sketches", "embeddings", "query_log", "api_keys", "index_builds"):
            dump.extend(repr(tuple(row)) for row in connection.execute(text(f"SELECT * FROM {table}")))
    everything = "\n".join(dump) + caplog.text
    for identifier in ("Doe", "Jane", "Smith", "John", "MRN-4242", "MRN-4343", "19700101", "1970-01-01"):
        assert identifier not in everything
    assert "pharyngitis" in everything  # the dump did contain the rows
