"""The metadata CSV is joined to files by their path, never guessed: no case, diagnosis or patient
lands on the wrong image, and every row that is not used is reported by its line (never its values)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from api.cli import app
from archive_faults import archive_env, one_line_error, take_snapshot
from indexing import store
from indexing.archive import Archive
from indexing.ingest.metadata import pseudonymize
from indexing.ingest.run import ingest_path


def _photo(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
    return path


def _numbered(folder: Path, count: int) -> Path:
    for n in range(count):
        _photo(folder / f"{n}.png", n)
    return folder


def _by_case(archive: Archive) -> dict[str, object]:
    with archive.sessions() as session:
        return {row.case_ref: row for row in store.list_images(session, limit=100)}


def _s2m(archive: Archive, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["archive", "ingest", *args, "--no-progress"], env=archive_env(archive))


def test_two_files_of_one_name_in_two_folders_each_get_their_own_row(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _photo(folder / "a" / "x.png", 1)
    _photo(folder / "b" / "x.png", 2)
    csv = tmp_path / "meta.csv"
    csv.write_text("file,case_id,patient_id,diagnosis\na/x.png,C-A,MRN-A,tonsillitis\nb/x.png,C-B,MRN-B,pharyngitis\n")
    report = ingest_path(archive, folder, metadata_csv=csv)
    assert (report.added, report.skipped, report.metadata_problems) == (2, [], [])
    rows = _by_case(archive)
    assert set(rows) == {"C-A", "C-B"}
    assert rows["C-A"].diagnosis == "tonsillitis" and rows["C-B"].diagnosis == "pharyngitis"
    key, chars = archive.settings.pseudonym_key, archive.settings.pseudonym_hex_chars
    assert rows["C-A"].patient_ref == pseudonymize(key, "MRN-A", chars)
    assert rows["C-B"].patient_ref == pseudonymize(key, "MRN-B", chars)
    stored = {case: np.asarray(Image.open(archive.files.absolute(row.stored_path))) for case, row in rows.items()}
    np.testing.assert_array_equal(stored["C-A"], np.asarray(Image.open(folder / "a" / "x.png")))


def test_a_name_two_files_share_refuses_the_ingest_naming_them(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _photo(folder / "a" / "x.png", 1)
    _photo(folder / "b" / "x.png", 2)
    _photo(folder / "y.png", 3)
    csv = tmp_path / "meta.csv"
    csv.write_text("file,case_id,patient_id,diagnosis\ny.png,C-Y,MRN-Y,normal\nx.png,C-X,MRN-5551,tonsillitis\n")
    before = take_snapshot(archive)
    result = _s2m(archive, str(folder), "--metadata", str(csv))
    assert result.exit_code == 2
    line = one_line_error(result.output)
    assert "meta.csv line 3 names a file by a name 2 ingested files have (a/x.png, b/x.png)" in line
    assert "MRN-5551" not in line and "tonsillitis" not in line
    assert take_snapshot(archive) == before

    csv.write_text("file,case_id\ny,C-Y\n")  # a unique stem is still accepted
    assert _s2m(archive, str(folder), "--metadata", str(csv)).exit_code == 0
    assert _by_case(archive)["C-Y"].width == 12


def test_ragged_duplicate_and_absent_rows_are_reported_by_line_and_refused_with_strict(archive: Archive, tmp_path: Path) -> None:
    folder = _numbered(tmp_path / "in", 4)
    csv = tmp_path / "meta.csv"
    csv.write_text(
        "file,case_id,diagnosis\n"
        "0.png,C-0,normal\n"
        "1.png,C-1,tonsillitis,MRN-5551\n"  # one cell too many: the cells may be shifted
        "2.png,C-2\n"  # one too few
        "3.png,C-3,normal\n"
        "3.png,C-3b,pharyngitis\n"  # a second row for 3.png: which is right cannot be told
        "gone.png,C-9,normal\n"  # no such file
        "./0.png,C-0,normal\n"  # the same row again: reported, no doubt which case
    )
    before = take_snapshot(archive)
    strict = _s2m(archive, str(folder), "--metadata", str(csv), "--strict")
    assert strict.exit_code == 2
    line = one_line_error(strict.output)
    assert line.startswith("error: meta.csv line ") and "with --strict nothing was ingested" in line
    assert "MRN-5551" not in line
    assert take_snapshot(archive) == before

    result = _s2m(archive, str(folder), "--metadata", str(csv))
    assert result.exit_code == 0, result.output
    assert "added 1 images (0 annotations), 0 already in the archive, 3 skipped, 3 metadata rows not used" in result.output
    assert "skipped 1.png: meta.csv line 3: has 4 cells, the header has 3" in result.output
    assert "skipped 2.png: meta.csv line 4: has 2 cells, the header has 3" in result.output
    assert "skipped 3.png: meta.csv lines 5 and 6 both describe it" in result.output
    assert "not used: meta.csv line 6: names the same file as line 5" in result.output
    assert "not used: meta.csv line 7: names no file of the ingested folder" in result.output
    assert "not used: meta.csv line 8: repeats line 2" in result.output
    assert "MRN-5551" not in result.output and "gone.png" not in result.output
    assert set(_by_case(archive)) == {"C-0"}


def test_labels_keep_their_text_and_numeric_labels_are_plain_numbers(archive: Archive, tmp_path: Path) -> None:
    folder = _numbered(tmp_path / "in", 5)
    grades_and_ages = [("2", "41", "007"), ("007", "41", "01234"), ("2", "1_000", "1_000"), ("2", "1e3", "A"), ("3", "40.5", "")]
    csv = tmp_path / "meta.csv"
    csv.write_text("file,case_id,tonsil_grade,patient_age,ward\n"
                   + "".join(f"{n}.png,C-{n},{','.join(cells)}\n" for n, cells in enumerate(grades_and_ages)))
    report = ingest_path(archive, folder, metadata_csv=csv, keep_columns=("ward",))
    assert dict(report.skipped) == {
        "1.png": "meta.csv line 3: label tonsil_grade is not a number in plain decimals (no leading zeros, separators or exponent)",
        "2.png": "meta.csv line 4: label patient_age is not a number in plain decimals (no leading zeros, separators or exponent)",
        "3.png": "meta.csv line 5: label patient_age is not a number in plain decimals (no leading zeros, separators or exponent)",
    }
    rows = _by_case(archive)
    assert rows["C-0"].labels == {"tonsil_grade": 2, "patient_age": 41, "ward": "007"}
    assert rows["C-4"].labels == {"tonsil_grade": 3, "patient_age": 40.5}


@pytest.mark.parametrize("uid", ["not a uid", "1.2.840.01", "1." + "2" * 70, "1.2.3.", "Doe^Jane"])
def test_a_uid_that_is_not_a_dicom_uid_refuses_its_row(archive: Archive, tmp_path: Path, uid: str) -> None:
    folder = _numbered(tmp_path / "in", 2)
    csv = tmp_path / "meta.csv"
    csv.write_text(f"file,case_id,study_uid,sop_uid\n0.png,C-0,1.2.826.0.1.3680043.8.498.1,1.2.826.0.1.3680043.8.498.2\n"
                   f"1.png,C-1,1.2.3,{uid}\n")
    report = ingest_path(archive, folder, metadata_csv=csv)
    assert report.added == 1
    assert report.skipped == [("1.png", "meta.csv line 3: sop_uid is not a DICOM UID (digits and dots, at most 64 characters)")]
    row = _by_case(archive)["C-0"]
    assert (row.study_uid, row.sop_uid) == ("1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2")


def test_two_rows_giving_one_sop_uid_to_different_cases_describe_no_dicom(archive: Archive, tmp_path: Path, write_dicom) -> None:  # type: ignore[no-untyped-def]
    import pydicom

    folder = tmp_path / "in"
    sop = pydicom.dcmread(write_dicom(folder / "scan.dcm", np.full((12, 12, 3), 80, np.uint8))).SOPInstanceUID
    csv = tmp_path / "meta.csv"
    csv.write_text(f"file,case_id,diagnosis,sop_uid\nelsewhere-1.png,C-1,normal,{sop}\nelsewhere-2.png,C-2,tonsillitis,{sop}\n")
    report = ingest_path(archive, folder, metadata_csv=csv)
    assert report.added == 1
    assert report.metadata_problems == [("meta.csv line 3", "gives another case a SOP Instance UID an earlier row has")]
    (row,) = _by_case(archive).values()
    assert row.diagnosis is None and row.sop_uid == sop


def test_annotations_naming_files_of_two_folders_refuse_the_ingest(archive: Archive, tmp_path: Path) -> None:
    import json

    from formats.masks import encode_rle

    folder = tmp_path / "in"
    _photo(folder / "a" / "x.png", 1)
    _photo(folder / "b" / "x.png", 2)
    mask = np.zeros((12, 12), np.uint8)
    mask[2:6, 3:9] = 1
    coco = tmp_path / "annotations.json"
    coco.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.png", "height": 12, "width": 12}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "instance_id": 1, "segmentation": encode_rle(mask)}],
        "categories": [{"id": 1, "name": "1"}],
    }))
    before = take_snapshot(archive)
    result = _s2m(archive, str(folder), "--annotations", str(coco))
    assert result.exit_code == 2
    assert one_line_error(result.output) == (
        "error: annotations.json annotates 'x', a name files in 2 folders have (a/x.png, b/x.png): "
        "ingest each folder with its own annotations; nothing was ingested"
    )
    assert take_snapshot(archive) == before
