"""Original file names: kept only when they pass the identifier screen, never the folders above them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app
from indexing.archive import Archive
from indexing.ingest.names import screen_file_name
from indexing.models import Image as ImageRow

from tests.indexing.test_archive_cli import _env


@pytest.mark.parametrize(("name", "patient_id", "kept"), [
    ("case-01.png", None, True),
    ("IMG_0042.jpg", None, True),
    ("000042.png", None, True),  # the renderer's zero-padded counter
    ("0042117.png", None, False),  # a record number
    ("Smith_John_1960-01-01.jpg", None, False),  # a date
    ("scan 12.03.61.png", None, False),
    ("MRN_17.png", None, False),  # an identifying word
    ("dob-xyz.png", None, False),
    ("PX77_left.png", "px77", False),  # the row's own patient id
    ("tonsil_left.png", "PX77", True),
    ("jane@example.org.png", None, False),  # outside [A-Za-z0-9._ -]
    ("a" * 129 + ".png", None, False),
])
def test_the_identifier_screen(name: str, patient_id: str | None, kept: bool) -> None:
    assert screen_file_name(name, patient_id) is kept


def test_names_are_kept_only_on_request_and_only_when_they_pass_the_screen(archive: Archive, tmp_path: Path, make_photo) -> None:  # type: ignore[no-untyped-def]
    names = ["case-01.png", "Smith_John_1960-01-01.png", "MRN0042117.png", "PX77_left.png"]
    csv = tmp_path / "meta.csv"
    csv.write_text("file,patient_id\n" + "".join(f"{n},PX77\n" for n in names) + "".join(f"{n},PX77\n" for n in names))

    def ingest(folder_name: str, seed: int, *flags: str) -> str:
        folder = tmp_path / folder_name / "Smith John"  # a folder named after the patient: never kept
        folder.mkdir(parents=True)
        for offset, name in enumerate(names):
            Image.fromarray(make_photo(seed + offset)).save(folder / name)
        result = CliRunner().invoke(app, ["archive", "ingest", str(folder.parent), "--metadata", str(csv), "--no-progress", *flags],
                                    env=_env(archive))
        assert result.exit_code == 0, result.output
        return result.output

    default = ingest("plain", 0)
    assert "original file names not kept for 4 images (use --keep-file-names" in default
    asked = ingest("asked", 10, "--keep-file-names")
    assert "original file names not kept for 3 images (they did not pass the identifier screen)" in asked
    with archive.sessions() as session:
        stored = session.execute(select(ImageRow.id, ImageRow.original_name).order_by(ImageRow.id)).all()
    assert len(stored) == 8
    assert [name for _, name in stored[:4]] == [None] * 4  # not asked for: none kept
    assert sorted(name or "-" for _, name in stored[4:]) == ["-", "-", "-", "case-01.png"]
    for text in (default, asked):
        assert "Smith" not in text and "MRN" not in text and "PX77" not in text
