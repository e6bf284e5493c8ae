"""`s2m eval generation` and `s2m eval all` on a tiny run: Table I rows, the Fig. 3 grid, the HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from generation.presets import SHIPPED_BUNDLE

STYLES = "careful_tracer,heavy_marker"  # one seen, one unseen: every section, few Inception passes
RUN_ROWS = ("pix2pix", "sketch2medi_without_h", "sketch2medi")
METRICS = ("fid", "kid", "frechet_c", "dice_s", "dice_truth", "perceptual", "ssim")


@pytest.fixture(scope="module")
def generation_report(tmp_path_factory: pytest.TempPathFactory, pix2pix_small: Path) -> Path:
    root = tmp_path_factory.mktemp("eval-generation")
    result = CliRunner().invoke(app, ["eval", "generation", "--count", "2", "--size", "64", "--styles", STYLES,
                                      "--pix2pix", str(pix2pix_small), "--work", str(root / "work"),
                                      "--report", str(root / "gen.json")])
    assert result.exit_code == 0, result.output
    return root / "gen.json"


def test_eval_generation_scores_every_row_seen_and_unseen_with_the_grid_beside(generation_report) -> None:
    data = json.loads(generation_report.read_text())
    assert data["rows"] == {"pix2pix": "run", "sketch2medi_without_h": "run", "sketch2medi": "run",
                            "cyclegan": "not run", "unit": "not run", "ugatit": "not run"}
    assert set(data["table"]) == {"seen", "unseen"} and set(data["by_style"]) == set(STYLES.split(","))
    assert data["table"]["unseen"]["sketch2medi"]["samples"] == 2  # heavy_marker, both phantoms
    for row in RUN_ROWS:
        values = data["table"]["seen"][row]
        assert all(values[m] is not None for m in METRICS)
        assert 0 <= values["dice_truth"]["mean"] <= 100 and -1 <= values["ssim"]["mean"] <= 1
    # the shipped Sketch2MedI follows the sketch; an untrained pix2pix does not
    assert data["table"]["seen"]["sketch2medi"]["dice_truth"]["mean"] > data["table"]["seen"]["pix2pix"]["dice_truth"]["mean"] + 20
    assert "not LPIPS" in data["perceptual"] and "Inception-v3" in data["fid_features"]
    assert set(data["by_level"]["seen"]) == {"0.0", "0.5"}  # phantom k at level k of 0.0, 0.5, 1.0
    assert data["grid_columns"] == ["sketch", *RUN_ROWS, "reference"]
    assert Path(data["grid"]).parent == generation_report.parent and Path(data["grid"]).stat().st_size > 0


def test_eval_all_renders_every_section_with_plots_and_a_json_of_every_number(
        tmp_path, generation_report, retrieval_report) -> None:
    page = tmp_path / "evaluation" / "index.html"
    result = CliRunner().invoke(app, ["eval", "all", "--generation-report", str(generation_report),
                                      "--retrieval-report", str(retrieval_report), "--report", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    for table in ("meta", "generation-seen", "generation-unseen", "generation-style", "generation-level",
                  "retrieval-style", "retrieval-level", "retrieval-canvas", "retrieval-validation", "retrieval-feedback"):
        assert f'id="{table}"' in text
    for row in ("pix2pix_c", "fused_xT", "chamfer", "cyclegan", "sketch2medi_without_h"):
        assert row in text
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    images = re.findall(r'<img[^>]* src="([^"]+)"', text)
    assert "fig3.png" in images and len(images) == 1 + 7 + 6
    assert all((page.parent / name).stat().st_size > 0 for name in images)
    data = json.loads(page.with_suffix(".json").read_text())
    assert set(data["generation"]["table"]["seen"]) == set(RUN_ROWS)
    assert "pix2pix_c" in data["retrieval"]["test_styles"]["careful_tracer"]
    meta = data["meta"]
    assert meta["bundle_version"] == data["generation"]["bundle_version"] and meta["machine"]["cores"] >= 1
    assert meta["command"].startswith("s2m eval all") and "--generation-report" in meta["command"]
    assert meta["data_seeds"]["generation_heldout"] == 1 and meta["data_seeds"]["retrieval_heldout"] == 1000
    assert meta["bundle_version"] in text and meta["machine"]["cpu"] in text


def test_eval_all_refuses_a_report_of_another_bundle(tmp_path, generation_report) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(generation_report.read_text()), "bundle_version": "0" * 12}))
    result = CliRunner().invoke(app, ["eval", "all", "--model", str(SHIPPED_BUNDLE), "--generation-report", str(other),
                                      "--retrieval-report", str(other), "--report", str(tmp_path / "r" / "i.html")])
    assert result.exit_code == 2 and "not on" in result.output
    assert not (tmp_path / "r").exists()


def test_eval_generation_refuses_an_unknown_style(tmp_path) -> None:
    result = CliRunner().invoke(app, ["eval", "generation", "--styles", "careful_tracer,nobody",
                                      "--report", str(tmp_path / "g.json"), "--work", str(tmp_path / "w")])
    assert result.exit_code == 2 and not (tmp_path / "w").exists()
