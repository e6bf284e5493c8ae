"""`s2m eval retrieval` end to end on a tiny phantom archive with the shipped bundle (run once: `retrieval_report`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from api.cli import app
from generation.bundle import Bundle
from generation.signs import ABSENT, CHOSEN, PRESENT, SignDirections, require_signs
from retrieval.sign_evaluation import ROUTE_ROWS
from tests.retrieval.conftest import signs_bundle  # noqa: F401 (fixture)

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


def test_eval_retrieval_feedback_rounds_raise_precision_with_constants_from_validation(retrieval_report) -> None:
    from phantoms.freehand import SEEN_STYLES

    feedback = json.loads(retrieval_report.read_text())["feedback"]
    # chosen on the seen styles' validation queries (2 exact + 4 similar a style), among configs keeping their recall
    assert feedback["validation_queries"] == {"similar": 4 * len(SEEN_STYLES), "exact": 2 * len(SEEN_STYLES)}
    chosen, before = feedback["validation_chosen"], feedback["validation_before"]
    assert chosen["exact_recall@10"] >= before["exact_recall@10"]
    kept = [v["diagnosis_precision@10"] for v in feedback["validation_best"].values() if v["exact_recall@10"] >= before["exact_recall@10"]]
    assert chosen["diagnosis_precision@10"] == max(kept, default=chosen["diagnosis_precision@10"])
    for name in ("seen", "unseen"):
        rows = feedback[name]["rows"]
        assert list(rows) == ["round 0", "round 1", "round 2"] and feedback[name]["not_this_returned"] == 0
        for figures in rows.values():
            for metric in ("diagnosis_precision@10", "exact_recall@10"):
                low, high = figures[metric]["ci95"]
                assert 0.0 <= low <= figures[metric]["mean"] <= high <= 1.0
        assert set(feedback[name]["goals"]) == {"precision@10_after_one_round_at_least_0.80",
                                                "exact_recall@10_not_lower_after_one_round"}
    seen = feedback["seen"]["rows"]  # 72 similar-case test queries: marking the right diagnosis pays on the tiny archive
    assert seen["round 1"]["diagnosis_precision@10"]["mean"] > seen["round 0"]["diagnosis_precision@10"]["mean"] + 0.05


def test_eval_retrieval_refuses_bad_canvases_before_doing_anything(tmp_path) -> None:
    result = CliRunner().invoke(app, ["eval", "retrieval", "--canvases", "8,x", "--work", str(tmp_path / "w"),
                                      "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert not (tmp_path / "w").exists() and not (tmp_path / "r.json").exists()


def test_eval_retrieval_adds_the_sign_rows_chosen_on_validation(tmp_path, signs_bundle) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from generation.presets import SHIPPED_BUNDLE

    report = tmp_path / "report.json"
    command = ["eval", "retrieval", "--archive", "24", "--queries", "4", "--size", "64", "--canvases", "64",
               "--steps", "1", "--work", str(tmp_path / "work"), "--report", str(report), "--signs"]
    signless = Path(shutil.copytree(SHIPPED_BUNDLE, tmp_path / "signless", ignore=shutil.ignore_patterns("signs.safetensors")))
    meta = json.loads((signless / "bundle.json").read_text())
    del meta["signs"]
    (signless / "bundle.json").write_text(json.dumps(meta))
    refused = CliRunner().invoke(app, [*command, "--model", str(signless)])
    assert refused.exit_code == 2 and "no sign directions" in refused.output and not report.exists()
    lonely = CliRunner().invoke(app, [*command[:-1], "--record-strengths", "--model", str(signs_bundle)])
    assert lonely.exit_code == 2 and "add --signs" in lonely.output
    bundle = Path(shutil.copytree(signs_bundle, tmp_path / "bundle"))  # the session's bundle stays as it is
    result = CliRunner().invoke(app, [*command, "--record-strengths", "--model", str(bundle)])
    assert result.exit_code == 0, result.output
    signs = json.loads(report.read_text())["signs"]
    # the preferred route's strengths are written into the bundle, with what they were chosen on, and are "present"
    recorded = signs["recorded"]
    assert recorded["route_row"] in signs["choices"] and recorded["heldout_fingerprint"] and recorded["archive_fingerprint"]
    assert recorded["strengths"] == signs["choices"][recorded["route_row"]]["factors"]
    keeping = [c for c in signs["choices"].values() if c["keeps_sketch_recall"]] or list(signs["choices"].values())
    assert recorded["validation_macro_precision"] == max(c["validation_macro_precision"] for c in keeping)
    assert recorded["validation_exact_recall_floor"] == signs["validation_exact_recall_floor"]
    directions = SignDirections.from_bundle(Bundle.open(bundle))
    assert directions.record[CHOSEN] == recorded and directions.defaults == recorded["strengths"]
    assert directions.routes == tuple(ROUTE_ROWS[recorded["route_row"]])
    assert require_signs(directions, {sign: PRESENT for sign in directions.names}) == recorded["strengths"]
    assert recorded["absent_strengths"] == signs["choices"][recorded["route_row"]]["absent_factors"]
    assert require_signs(directions, {sign: ABSENT for sign in directions.names}) == {
        sign: -value for sign, value in recorded["absent_strengths"].items()}  # "absent": minus what was chosen
    assert "written into" in result.output
    assert set(signs["rows"]) == {"seen", "unseen"}  # drawer styles apart; choices made on the seen ones' validation
    for rows in signs["rows"].values():
        assert set(rows) == {"chamfer", "fused", "chamfer_labelled20", *ROUTE_ROWS}
        for row in rows.values():
            for name in ("diagnosis_precision@10", "exact_recall@10", "sign_match@10"):
                low, high = row[name]["ci95"]
                assert 0.0 <= low <= row[name]["mean"] <= high <= 1.0
            assert row["per_diagnosis"] and set(row["sign_match_per_sign@10"]) <= set(signs["signs"])
        # the reference reads the labels of a fifth of the archive: it finds an exact case only when it is labelled
        assert rows["chamfer_labelled20"]["exact_recall@10"]["mean"] <= rows["chamfer"]["exact_recall@10"]["mean"]
    assert signs["labelled_cases"] == round(0.2 * 24)
    for choice in signs["choices"].values():  # made on the validation queries, one factor per sign present and absent
        assert set(choice["factors"]) == set(choice["absent_factors"]) == set(signs["signs"]) and choice["appearance_weight"] >= 0
    assert "signs, seen styles' test queries: fused_signs_both" in result.output
