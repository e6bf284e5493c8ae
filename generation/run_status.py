"""Where a long training run stands: read from its folder alone, so any clone can tell.

A run that lasts days is stopped and resumed many times, on whatever machine work goes on; its
log (one JSONL record every few steps, the clock restarting at each start) and its snapshot
evaluations (`evals.jsonl`) are all that say how far it got and how long the rest may take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.training import RunDir, read_jsonl

EVALS_FILE = "evals.jsonl"
LOSS_KEYS = ("loss_D", "loss_G", "r1", "pl", "loss")


@dataclass(frozen=True)
class Goal:
    """What a G run trains towards: FID under `fid` and every visible sign drawn within `sign_factor` of the archive."""

    fid: float = 100.0
    sign_factor: float = 1.5

    def met(self, evaluation: dict[str, Any]) -> bool:
        ratios = evaluation.get("sign_ratios", {})
        signs_met = bool(ratios) and all(1 / self.sign_factor <= r <= self.sign_factor for r in ratios.values())
        return evaluation["fid"] < self.fid and signs_met


@dataclass(frozen=True)
class RunStatus:
    """A run's progress: position, time spent, last losses and the snapshot evaluations."""

    step: int
    kimg: float | None
    minutes: float  # wall-clock minutes trained over every start of the run
    starts: int  # how many times the run was started or resumed
    images_per_s: float | None  # median of the last 20 logged windows
    losses: dict[str, float]
    evaluations: list[dict[str, Any]]
    eta_minutes: float | None  # to the goal's FID at the current speed, when the FID curve allows a guess
    goal_met: bool


def training_minutes(records: list[dict[str, Any]]) -> tuple[float, int]:
    """Minutes trained and the number of starts: each start's clock runs from 0 and the log appends."""
    minutes, starts, previous = 0.0, 0, None
    for record in records:
        if "time_s" not in record:
            continue
        if previous is None or record["time_s"] < previous or record.get("event") == "start":
            starts += 1
            if previous is not None and record["time_s"] < previous:
                minutes += previous / 60
        previous = record["time_s"]
    return minutes + (previous or 0.0) / 60, starts


def fid_eta_minutes(evaluations: list[dict[str, Any]], goal_fid: float, images_per_s: float | None) -> float | None:
    """Minutes until FID reaches `goal_fid`, from a power law (log FID against log kimg) fitted to the
    last three snapshots; None while fewer than three exist, FID does not fall, or the speed is unknown."""
    points = [(e["kimg"], e["fid"]) for e in evaluations if e.get("kimg", 0) > 0 and e.get("fid", 0) > 0][-3:]
    if len(points) < 3 or not images_per_s:
        return None
    xs = [math.log(k) for k, _ in points]
    ys = [math.log(f) for _, f in points]
    mean_x, mean_y = sum(xs) / 3, sum(ys) / 3
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / max(sum((x - mean_x) ** 2 for x in xs), 1e-12)
    if slope >= 0:
        return None
    if points[-1][1] <= goal_fid:
        return 0.0
    goal_kimg = math.exp(mean_x + (math.log(goal_fid) - mean_y) / slope)
    return max(goal_kimg - points[-1][0], 0.0) * 1000 / images_per_s / 60


def run_status(run_dir: Path, goal: Goal = Goal()) -> RunStatus:
    """The status of the run in `run_dir` (its log.jsonl and evals.jsonl)."""
    run = RunDir(Path(run_dir))
    if not run.log.is_file():
        raise FileNotFoundError(f"{run_dir} holds no training log (log.jsonl); is it a run folder?")
    try:
        records = read_jsonl(run.log)
        evaluations = read_jsonl(run.root / EVALS_FILE)
    except ValueError:
        raise ValueError(f"a log of {run_dir} holds a line that is not JSON (a write cut short?)") from None
    steps = [r for r in records if "step" in r]
    if not steps:
        raise ValueError(f"{run_dir} has not logged a training step yet")
    last = steps[-1]
    minutes, starts = training_minutes(records)
    speeds = sorted(r["images_per_s"] for r in steps[-20:] if "images_per_s" in r)
    images_per_s = speeds[len(speeds) // 2] if speeds else None
    return RunStatus(
        step=int(last["step"]), kimg=last.get("kimg"), minutes=minutes, starts=starts, images_per_s=images_per_s,
        losses={k: float(last[k]) for k in LOSS_KEYS if k in last}, evaluations=evaluations,
        eta_minutes=fid_eta_minutes(evaluations, goal.fid, images_per_s),
        goal_met=bool(evaluations) and goal.met(evaluations[-1]),
    )
