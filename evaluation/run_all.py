"""Both evaluations, then one HTML report with a JSON beside it (`s2m eval all`).

Either evaluation can instead be read from a JSON it wrote earlier, so a long run can be done
in parts and assembled; a JSON made with another bundle than the one evaluated is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.generation_eval import run_generation_eval
from evaluation.provenance import git_commit, machine
from evaluation.report import GRID_FILE, write_report
from evaluation.retrieval_eval import run_retrieval_eval
from formats.errors import InputError


@dataclass(frozen=True)
class EvalAllConfig:
    """What `s2m eval all` runs: the generation and the retrieval evaluation's settings in one."""

    model: Path
    pix2pix: Path | None
    report: Path  # the HTML page; its JSON and plots go beside it
    count: int  # held-out phantoms of the generation evaluation
    archive_count: int
    queries: int
    canvases: tuple[int, ...]
    size: int
    seed: int  # retrieval archive and query seed (held-out cases: seed + 1000)
    heldout_seed: int  # generation held-out phantom seed
    work: Path
    steps: int | None
    perceptual: str | None
    device: str
    generation_report: Path | None = None  # reuse this `eval generation` JSON
    retrieval_report: Path | None = None  # reuse this `eval retrieval` JSON


def evaluate_all(config: EvalAllConfig, command: str) -> dict[str, Path]:
    """Run (or read back) both evaluations and write the report; returns what was written (`write_report`)."""
    from generation.bundle import Bundle

    version = Bundle.open(config.model).version
    generation = _reused(config.generation_report, version)
    retrieval = _reused(config.retrieval_report, version)
    started = time.perf_counter()
    if generation is None:
        generation = run_generation_eval(config.model, config.pix2pix, config.count, config.work / "generation", None,
                                         config.size, config.heldout_seed, config.steps, config.perceptual, config.device,
                                         config.report.parent / GRID_FILE)
    if retrieval is None:
        retrieval = run_retrieval_eval(config.model, config.archive_count, config.queries, config.work / "retrieval", None,
                                       config.canvases, config.size, config.seed, config.device, False, config.pix2pix)
    meta = {"command": command, "bundle": str(config.model), "bundle_version": version,
            "pix2pix_version": generation.get("pix2pix_version"),
            "data_seeds": {"generation_heldout": generation["heldout_seed"], "generation_sketches": generation["sketch_seed"],
                           "retrieval_archive": retrieval.get("archive_seed"),
                           "retrieval_heldout": retrieval.get("heldout_seed"), "retrieval_queries": retrieval["seed"]},
            "machine": machine(), "code": git_commit(), "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": round(time.perf_counter() - started, 1),
            "reused": {"generation": str(config.generation_report) if config.generation_report else None,
                       "retrieval": str(config.retrieval_report) if config.retrieval_report else None}}
    return write_report(config.report, meta, generation, retrieval)


def _reused(path: Path | None, version: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        raise InputError(f"{path} is not a readable JSON report of s2m eval") from None
    if data.get("bundle_version") != version:
        raise InputError(f"{path} was measured on bundle {data.get('bundle_version')}, not on {version} (--model)")
    return data
