"""`s2m eval retrieval` end to end on a tiny phantom archive with the shipped bundle."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from api.cli import app
from generation.bundle import PIX2PIX, save_network
from generation.pix2pix import Pix2PixConfig, UNetGenerator

ROWS = {"chamfer", "appearance_x0", "appearance", "latent", "shape", "fused_x0", "fused_xT"}


def pix2pix_bundle(folder, preset: str = "small"):
    """A bundle holding an untrained pix2pix generator at the preset's side (the shipped bundle's for small)."""
    config = Pix2PixConfig.for_preset(preset)
    save_network(folder, PIX2PIX, UNetGenerator(config).eval(), config)
    return folder


def test_eval_retrieval_reports_every_style_with_intervals_and_weights_from_validation(tmp_path) -> None:
    from phantoms.freehand import DRAWER_STYLES, UNSEEN_STYLES

    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["eval", "retrieval", "--archive", "24", "--queries", "4", "--size", "64",
                                      "--canvases", "64,512", "--work", str(tmp_path / "work"),
                                      "--pix2pix", str(pix2pix_bundle(tmp_path / "p2p")), "--report", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    styles = data["test_styles"]
    assert set(styles) == {s.name for s in DRAWER_STYLES} | {"default", "default@64px", "default@1024px"}
    for unseen in UNSEEN_STYLES:
        assert f"{unseen}/val" not in data["queries"]  # never used to choose anything
    row = styles["careful_tracer"]["fused_xT"]
    for name in ("exact_recall@1", "exact_recall@10", "exact_mrr", "similar_ndcg@10",
                 "similar_ndcg@10_normalised", "diagnosis_precision@10"):
        low, high = row[name]["ci95"]
        assert low <= row[name]["mean"] <= high
    assert set(styles["careful_tracer"]) == ROWS | {"pix2pix_c"}
    latency = data["latency_ms_per_query"]
    assert set(latency) == ROWS | {"pix2pix_c"} and all(ms > 0 for ms in latency.values())
    assert latency["fused_xT"] > latency["appearance"] > latency["appearance_x0"]  # H's steps cost time
    assert set(data["by_level"]["seen"]) == {"0.0", "0.5", "1.0", "random"}
    assert set(data["by_level"]["unseen"]) == {"0.0", "0.5", "1.0"}
    assert set(data["by_canvas"]) == {"64", "512"}
    assert set(data["by_canvas"]["512"]) == ROWS | {"pix2pix_c"}
    # contour chamfer on a careful tracer's sketches of 24 cases finds most of them: the pipeline works
    assert styles["careful_tracer"]["chamfer"]["exact_recall@10"]["mean"] >= 0.5
    assert sum(data["weights"].values()) > 0


def test_eval_retrieval_refuses_bad_canvases_before_doing_anything(tmp_path) -> None:
    result = CliRunner().invoke(app, ["eval", "retrieval", "--canvases", "8,x", "--work", str(tmp_path / "w"),
                                      "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert not (tmp_path / "w").exists() and not (tmp_path / "r.json").exists()
