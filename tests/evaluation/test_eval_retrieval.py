"""`s2m eval retrieval` end to end on a tiny phantom archive with the shipped bundle (run once: `retrieval_report`)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from api.cli import app

ROWS = {"chamfer", "appearance_x0", "appearance", "latent", "shape", "fused_x0", "fused_xT"}


def test_eval_retrieval_reports_every_style_with_intervals_and_weights_from_validation(retrieval_report) -> None:
    from phantoms.freehand import DRAWER_STYLES, UNSEEN_STYLES

    data = json.loads(retrieval_report.read_text())
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
    # contour chamfer on a careful tracer's sketches of 24 cases finds most of them: the pipeline works
    assert styles["careful_tracer"]["chamfer"]["exact_recall@10"]["mean"] >= 0.5
    assert sum(data["weights"].values()) > 0


def test_eval_retrieval_times_every_row_and_breaks_down_by_level_and_canvas(retrieval_report) -> None:
    data = json.loads(retrieval_report.read_text())
    latency = data["latency_ms_per_query"]
    assert set(latency) == ROWS | {"pix2pix_c"} and all(ms > 0 for ms in latency.values())
    assert latency["fused_xT"] > latency["appearance"] > latency["appearance_x0"]  # H's steps cost time
    assert set(data["by_level"]["seen"]) == {"0.0", "0.5", "1.0", "random"}
    assert set(data["by_level"]["unseen"]) == {"0.0", "0.5", "1.0"}  # the default style is not unseen
    assert set(data["by_canvas"]) == {"64", "512"}  # the 64 / 1024 px sweeps re-draw other groups: not counted
    assert set(data["by_canvas"]["512"]) == ROWS | {"pix2pix_c"}
    assert data["pix2pix_version"] and data["heldout_seed"] == data["seed"] + 1000
    assert data["refinement_steps"] == 2


def test_eval_retrieval_refuses_bad_canvases_before_doing_anything(tmp_path) -> None:
    result = CliRunner().invoke(app, ["eval", "retrieval", "--canvases", "8,x", "--work", str(tmp_path / "w"),
                                      "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert not (tmp_path / "w").exists() and not (tmp_path / "r.json").exists()
