"""A DICOM is one image by its pixels and its SOP Instance UID: never overwritten, never silently
dropped, linked to its photo when that came first, and refused when a UID is not a UID."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from indexing import store
from indexing.archive import Archive
from indexing.ingest.run import ingest_path


def _rows(archive: Archive) -> list:  # type: ignore[type-arg]
    with archive.sessions() as session:
        return store.list_images(session, limit=100)


def test_a_stored_uid_with_other_pixels_is_refused_with_a_sentence(archive: Archive, tmp_path: Path, make_photo, write_dicom) -> None:  # type: ignore[no-untyped-def]
    first = write_dicom(tmp_path / "one" / "a.dcm", make_photo(1))
    assert ingest_path(archive, tmp_path / "one").added == 1
    changed = pydicom.dcmread(first)
    changed.PixelData = make_photo(2).tobytes()  # the same UIDs, other pixels
    (tmp_path / "two").mkdir()
    changed.save_as(tmp_path / "two" / "a-edited.dcm")
    report = ingest_path(archive, tmp_path / "two")
    assert (report.added, report.already_present) == (0, 0)
    assert report.skipped == [("a-edited.dcm", "its SOP Instance UID is already in the archive with other pixels: not stored "
                                               "(one UID names one image; check which of the two is right)")]
    (row,) = _rows(archive)
    np.testing.assert_array_equal(np.asarray(Image.open(archive.files.absolute(row.stored_path))), make_photo(1))


def test_a_photo_ingested_before_its_dicom_gets_the_dicom_uids(archive: Archive, tmp_path: Path, make_photo, write_dicom) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "photos").mkdir()
    Image.fromarray(make_photo(3)).save(tmp_path / "photos" / "p.png")
    assert ingest_path(archive, tmp_path / "photos").added == 1
    dicom = write_dicom(tmp_path / "dicom" / "p.dcm", make_photo(3))
    report = ingest_path(archive, tmp_path / "dicom")
    assert (report.added, report.linked, report.already_present, report.skipped) == (0, 1, 0, [])
    tags = pydicom.dcmread(dicom)
    (row,) = _rows(archive)
    assert (row.study_uid, row.series_uid, row.sop_uid) == (tags.StudyInstanceUID, tags.SeriesInstanceUID, tags.SOPInstanceUID)
    again = ingest_path(archive, tmp_path / "dicom")
    assert (again.added, again.linked, again.already_present) == (0, 0, 1)


def test_a_dicom_whose_uid_is_free_text_is_refused_and_pydicom_never_prints_it(
    archive: Archive, tmp_path: Path, make_photo, write_dicom, capfd  # type: ignore[no-untyped-def]
) -> None:
    path = write_dicom(tmp_path / "in" / "bad.dcm", make_photo(4))
    dataset = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.SeriesInstanceUID = "Doe^Jane 1961-04-12"
    dataset.save_as(path)
    write_dicom(tmp_path / "in" / "good.dcm", make_photo(5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = ingest_path(archive, tmp_path / "in")
    assert report.added == 1
    assert report.skipped == [("bad.dcm", "its SeriesInstanceUID is not a DICOM UID (digits and dots, at most 64 characters)")]
    printed = capfd.readouterr()
    assert not any("Doe^Jane" in str(w.message) for w in caught)
    assert "Doe^Jane" not in printed.out + printed.err
    assert all(row.series_uid != "Doe^Jane 1961-04-12" for row in _rows(archive))
