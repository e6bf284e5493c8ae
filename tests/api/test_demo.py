"""`s2m demo --no-serve`: the archive, index and key `make demo` serves, and a second run that reuses them.

The served demo (the page in a browser, Ctrl-C) is tested in `test_web_pad.py`."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from api.cli import app
from indexing import store
from indexing.archive import Archive
from indexing.fused_index import index_status
from phantoms.reader import read_metadata


def test_demo_builds_archive_index_and_key_then_reuses_them(tmp_path, monkeypatch):
    from api.cli import demo

    monkeypatch.setenv("S2M_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("S2M_DATABASE_URL", "postgresql+psycopg2://nobody@127.0.0.1:1/never")  # the demo keeps its own
    monkeypatch.setattr(demo, "DEMO_SIZE", 32)
    monkeypatch.setattr(demo, "CONTACT_SHEET_IMAGES", 4)
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--count", "5", "--workers", "1", "--no-serve"])
    assert first.exit_code == 0, first.output
    root = tmp_path / "demo"
    dataset = root / "phantoms-5"
    assert len(read_metadata(dataset)) == 5

    sheet = np.asarray(Image.open(root / "phantom_contact_sheet.png"))
    assert sheet.shape == (32 + 2 * 4, 4 * 32 + 5 * 4, 3)  # one row of four, 4 px gutters
    assert np.array_equal(sheet[4:36, 4:36], np.asarray(Image.open(dataset / "images" / "000000.png")))
    generated = np.asarray(Image.open(root / "sketch2medi_demo.png"))
    side = 64 + 2  # the shipped bundle works at 64 px; save_image_grid pads by 2 px
    assert generated.shape == (5 * side + 2, 4 * side + 2, 3)  # five cases, four panels each
    sketch_panel, x_0_panel, reference_panel = generated[2:66, 2:66], generated[2:66, 68:132], generated[2:66, 200:264]
    assert (sketch_panel < 128).any() and (sketch_panel > 200).mean() > 0.5  # dark strokes on white
    assert x_0_panel.std() > 5 and not np.array_equal(x_0_panel, reference_panel)

    token = re.search(r"API key:\s+(\S+)", first.output).group(1)
    archive = Archive.open(demo.archive_settings(root, 5))
    try:
        status = index_status(archive)
        assert status.live_images == 5 and status.vector_count == 5 and status.not_indexed == 0
        with archive.sessions() as session:
            assert store.verify_api_key(session, token, "search") is not None
            assert store.verify_api_key(session, token, "admin") is None  # the demo key only searches
    finally:
        archive.close()
    assert (root / demo.KEY_FILE).stat().st_mode & 0o077 == 0  # the token file is the owner's only

    again = runner.invoke(app, ["demo", "--count", "5", "--workers", "1", "--no-serve"])
    assert again.exit_code == 0, again.output
    assert "kept from an earlier run" in again.output
    assert "ingest:" not in again.output and "embed:" not in again.output  # nothing done twice
    assert re.search(r"API key:\s+(\S+)", again.output).group(1) == token
    assert f"index build {status.build_id} " in again.output
