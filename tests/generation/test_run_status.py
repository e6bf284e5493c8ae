"""`s2m train status`: a long run's position, time over several starts, and the minutes to its goal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from generation.run_status import Goal, fid_eta_minutes, run_status, training_minutes


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def two_starts(run: Path) -> None:
    run.mkdir()
    write_jsonl(run / "log.jsonl", [
        {"time_s": 0.0, "event": "start"},
        {"time_s": 600.0, "step": 100, "kimg": 1.6, "loss_D": 1.0, "loss_G": 2.0, "images_per_s": 10.0},
        {"time_s": 1200.0, "step": 200, "kimg": 3.2, "loss_D": 0.9, "loss_G": 2.1, "images_per_s": 10.0},
        {"time_s": 300.0, "step": 250, "kimg": 4.0, "loss_D": 0.8, "loss_G": 2.2, "images_per_s": 20.0},
    ])


def test_minutes_add_up_over_restarts_and_the_last_losses_are_reported(tmp_path: Path) -> None:
    two_starts(tmp_path / "run")
    status = run_status(tmp_path / "run")
    assert (status.step, status.kimg, status.starts) == (250, 4.0, 2)
    assert status.minutes == pytest.approx(25.0)  # 20 minutes, then 5 after the resume
    assert status.losses == {"loss_D": 0.8, "loss_G": 2.2}
    assert status.eta_minutes is None and not status.goal_met  # no snapshot yet
    assert training_minutes([]) == (0.0, 0)


def test_the_eta_follows_a_falling_fid_and_refuses_a_rising_one() -> None:
    falling = [{"kimg": 10.0, "fid": 400.0}, {"kimg": 20.0, "fid": 200.0}, {"kimg": 40.0, "fid": 100.0 * 2}]
    # a power law through the last three points: FID halves per doubling of kimg from 10 to 20 ...
    eta = fid_eta_minutes([{"kimg": 10.0, "fid": 400.0}, {"kimg": 20.0, "fid": 200.0}, {"kimg": 40.0, "fid": 100.0}],
                          goal_fid=50.0, images_per_s=1000 / 60)
    assert eta == pytest.approx(40.0, rel=1e-6)  # 80 kimg reached 40 kimg from now, at 1 kimg a minute
    assert fid_eta_minutes(falling[:2], 50.0, 10.0) is None
    assert fid_eta_minutes([{"kimg": k, "fid": 100.0 + k} for k in (1.0, 2.0, 3.0)], 50.0, 10.0) is None


def test_the_goal_needs_both_fid_and_every_sign_within_its_factor() -> None:
    goal = Goal(fid=100.0, sign_factor=1.5)
    assert goal.met({"fid": 90.0, "sign_ratios": {"exudate": 0.8, "erythema": 1.4}})
    assert not goal.met({"fid": 90.0, "sign_ratios": {"exudate": 0.5, "erythema": 1.0}})
    assert not goal.met({"fid": 120.0, "sign_ratios": {"exudate": 1.0}})


def test_status_command_prints_the_run_and_refuses_a_folder_that_is_not_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    two_starts(run)
    write_jsonl(run / "evals.jsonl", [{"step": 200, "kimg": 3.2, "fid": 180.0, "sign_ratios": {"exudate": 0.25}}])
    result = CliRunner().invoke(app, ["train", "status", str(run)])
    assert result.exit_code == 0, result.output
    assert "step 250, 4.0 kimg; 25 min over 2 start(s)" in result.output
    assert "FID 180.0" in result.output and "exudate 0.25" in result.output
    as_json = json.loads(CliRunner().invoke(app, ["train", "status", str(run), "--json"]).output)
    assert as_json["step"] == 250 and as_json["evaluations"][0]["fid"] == 180.0
    refused = CliRunner().invoke(app, ["train", "status", str(tmp_path / "nothing")])
    assert refused.exit_code == 2 and "no training log" in refused.output
    (run / "log.jsonl").write_text('{"step": 3}\n{"step":')  # a write cut short
    cut = CliRunner().invoke(app, ["train", "status", str(run)])
    assert cut.exit_code == 2 and "not JSON" in cut.output
