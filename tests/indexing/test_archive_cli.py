"""`s2m archive ...` end to end through the real CLI, database and file store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from api.cli import app
from indexing.archive import Archive


def _env(archive: Archive) -> dict[str, str]:
    return {
        "S2M_DATABASE_URL": archive.settings.database_url,
        "S2M_DATA_DIR": str(archive.settings.data_dir),
        "S2M_PSEUDONYM_KEY": archive.settings.pseudonym_key.decode(),
        "S2M_INGEST_BATCH_SIZE": str(archive.settings.ingest_batch_size),
    }


def _s2m(archive: Archive, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=_env(archive))


def test_ingest_list_show_delete_stats_check(archive: Archive, tmp_path: Path, make_photo, write_dicom) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(3):
        Image.fromarray(make_photo(n)).save(folder / f"{n}.png")
    write_dicom(folder / "3.dcm", make_photo(3), patient_name="Doe^Jane")
    (folder / "4.png").write_text("not a picture")
    csv = tmp_path / "meta.csv"
    csv.write_text("file,diagnosis\n0.png,acute tonsillitis\n1.png,pharyngitis\n")

    ingested = _s2m(archive, "archive", "ingest", str(folder), "--metadata", str(csv), "--no-progress")
    assert ingested.exit_code == 0, ingested.output
    assert "added 4 images" in ingested.output
    assert "skipped 4.png: not an image" in ingested.output
    assert "Doe" not in ingested.output

    listed = _s2m(archive, "archive", "list")
    assert listed.exit_code == 0
    assert len(listed.output.strip().splitlines()) == 4
    assert "acute tonsillitis" in listed.output

    shown = _s2m(archive, "archive", "show", "1")
    fields = json.loads(shown.output)
    assert fields["id"] == 1 and Path(fields["file"]).is_file()
    assert np.asarray(Image.open(fields["file"])).shape == (24, 24, 3)

    assert _s2m(archive, "archive", "delete", "1").exit_code == 0
    assert len(_s2m(archive, "archive", "list").output.strip().splitlines()) == 3
    assert "(deleted)" in _s2m(archive, "archive", "list", "--include-deleted").output
    stats = _s2m(archive, "archive", "stats").output
    assert "images: 3 (+1 deleted)" in stats
    assert "dicom 1" in stats
    assert _s2m(archive, "archive", "check").exit_code == 0
    orphan = archive.files.put("f" * 64, b"left by a killed process")[0]
    found = _s2m(archive, "archive", "check")
    assert found.exit_code == 1 and f"file without row: {orphan}" in found.output
    assert _s2m(archive, "archive", "check", "--remove-orphans").exit_code == 0
    assert not archive.files.absolute(orphan).exists()
    missing = _s2m(archive, "archive", "delete", "99")
    assert missing.exit_code == 1 and "no image with id 99" in missing.output


def test_bad_metadata_is_a_clear_error_and_writes_nothing(archive: Archive, tmp_path: Path, make_photo) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(make_photo(0)).save(folder / "0.png")
    csv = tmp_path / "meta.csv"
    csv.write_text("filename,diagnosis\n0.png,pharyngitis\n")

    result = _s2m(archive, "archive", "ingest", str(folder), "--metadata", str(csv), "--no-progress")
    assert result.exit_code == 2
    assert "needs a 'file' column" in result.output
    both = _s2m(archive, "archive", "ingest", str(folder), "--dicomweb", "http://127.0.0.1:1/dicom-web")
    assert both.exit_code == 2 and "either PATH or --dicomweb" in both.output
    assert "images: 0" in _s2m(archive, "archive", "stats").output
    assert list(archive.files.stored_paths()) == []


def test_ingest_of_an_empty_folder_is_a_usage_error_and_writes_nothing(archive: Archive, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / ".hidden").mkdir(parents=True)
    (empty / ".hidden" / "0.png").write_bytes(b"left out: hidden")
    result = _s2m(archive, "archive", "ingest", str(empty), "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {empty} holds no files to ingest (hidden files and the side files are left out)"
    assert "added" not in result.output and "Traceback" not in result.output
    assert "images: 0 (+0 deleted)" in _s2m(archive, "archive", "stats").output
