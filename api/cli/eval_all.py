"""`s2m eval all`: the generation and the retrieval evaluation, then one HTML report with a JSON beside it.

Either evaluation can instead be read from a JSON it wrote earlier (`--generation-report`,
`--retrieval-report`), so a long run can be done in parts and assembled; a JSON made with another
bundle than `--model` is refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from api.cli.eval_commands import CANVASES, _ints, run_retrieval_eval
from api.cli.eval_generation import HELDOUT_SEED, run_generation_eval
from api.cli.eval_report import GRID_FILE, command_line, git_commit, machine, write_report
from generation.presets import SHIPPED_BUNDLE


def all_(
    ctx: typer.Context,
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="model bundle folder"),
    pix2pix: Optional[Path] = typer.Option(None, "--pix2pix", help="a bundle with the pix2pix network"),
    report: Path = typer.Option(Path("docs/evaluation/index.html"), "--report", help="HTML report (JSON and plots beside it)"),
    count: int = typer.Option(500, "--count", min=2, help="held-out phantoms of the generation evaluation"),
    archive_count: int = typer.Option(2000, "--archive", min=20, help="phantom archive size of the retrieval evaluation"),
    queries: int = typer.Option(100, "--queries", min=4, help="retrieval queries per style (exact and similar, each)"),
    canvases: str = typer.Option(CANVASES, "--canvases", help="canvas sides the retrieval queries are drawn on"),
    size: int = typer.Option(256, "--size", min=32, help="side of rendered phantoms"),
    seed: int = typer.Option(0, "--seed", help="retrieval archive and query seed (held-out cases: seed + 1000)"),
    heldout_seed: int = typer.Option(HELDOUT_SEED, "--heldout-seed", help="generation held-out phantom seed"),
    work: Path = typer.Option(Path("data/eval"), "--work", help="folder for rendered data, the archive DB and index"),
    steps: Optional[int] = typer.Option(None, "--steps", min=0, help="H's steps T; default: what H was trained with"),
    perceptual: Optional[str] = typer.Option(None, "--perceptual", help="perceptual backbone; default: the preset's"),
    device: str = typer.Option("cpu", "--device"),
    generation_report: Optional[Path] = typer.Option(None, "--generation-report", help="reuse this `eval generation` JSON"),
    retrieval_report: Optional[Path] = typer.Option(None, "--retrieval-report", help="reuse this `eval retrieval` JSON"),
) -> None:
    """Both evaluations, then one HTML report: tables, the Fig. 3 grid, plots with intervals, every number in JSON."""
    from generation.bundle import Bundle

    canvas_sides = _ints(canvases)
    version = Bundle.open(model).version
    generation = _reused(generation_report, version)
    retrieval = _reused(retrieval_report, version)
    started = time.perf_counter()
    if generation is None:
        generation = run_generation_eval(model, pix2pix, count, work / "generation", None, size, heldout_seed, steps,
                                         perceptual, device, report.parent / GRID_FILE)
    if retrieval is None:
        retrieval = run_retrieval_eval(model, archive_count, queries, work / "retrieval", None, canvas_sides, size, seed,
                                       device, False, pix2pix)
    meta = {"command": command_line(ctx, "eval all"), "bundle": str(model), "bundle_version": version,
            "pix2pix_version": generation.get("pix2pix_version"),
            "data_seeds": {"generation_heldout": generation["heldout_seed"], "generation_sketches": generation["sketch_seed"],
                           "retrieval_archive": retrieval.get("archive_seed"),
                           "retrieval_heldout": retrieval.get("heldout_seed"), "retrieval_queries": retrieval["seed"]},
            "machine": machine(), "code": git_commit(), "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": round(time.perf_counter() - started, 1),
            "reused": {"generation": str(generation_report) if generation_report else None,
                       "retrieval": str(retrieval_report) if retrieval_report else None}}
    written = write_report(report, meta, generation, retrieval)
    typer.echo(f"report in {written['html']}, every number in {written['json']}, {len(written) - 2} images beside them")


def _reused(path: Path | None, version: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        raise ValueError(f"{path} is not a readable JSON report of s2m eval") from None
    if data.get("bundle_version") != version:
        raise ValueError(f"{path} was measured on bundle {data.get('bundle_version')}, not on {version} (--model)")
    return data
