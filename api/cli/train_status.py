"""`s2m train status` and `s2m train monitor`: where a long run stands, and a snapshot's FID and signs."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command


def status_command(
    run_dir: Path = typer.Argument(..., help="the run folder (log.jsonl, checkpoint.pt, evals.jsonl)"),
    as_json: bool = typer.Option(False, "--json", help="print the status as JSON"),
) -> None:
    """Say a run's step, kimg, minutes spent, last losses, last FID and sign shares, and minutes to the goal."""
    from generation.run_status import Goal, run_status

    status = run_status(run_dir)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(status), indent=2))
        return
    kimg = f", {status.kimg:.1f} kimg" if status.kimg is not None else ""
    speed = f", {status.images_per_s:.1f} images/s lately" if status.images_per_s else ""
    typer.echo(f"step {status.step}{kimg}; {status.minutes:.0f} min over {status.starts} start(s){speed}")
    typer.echo("last losses: " + ", ".join(f"{k} {v:.4g}" for k, v in status.losses.items()))
    if not status.evaluations:
        typer.echo("no snapshot evaluated yet (s2m train monitor RUN_DIR ...)")
        return
    last = status.evaluations[-1]
    typer.echo(f"last snapshot: step {last['step']}, FID {last['fid']:.1f} (goal < {Goal().fid:.0f})")
    typer.echo("signs drawn, G's share / archive's: " + ", ".join(
        f"{sign} {ratio:.2f}" for sign, ratio in last.get("sign_ratios", {}).items()))
    if status.goal_met:
        typer.echo("the goal holds at the last snapshot")
    elif status.eta_minutes is None:
        typer.echo("minutes to the FID goal: not yet estimable (needs three snapshots with a falling FID)")
    else:
        typer.echo(f"minutes to the FID goal at this speed: about {status.eta_minutes:.0f} (a power-law guess)")


def monitor_command(
    run_dir: Path = typer.Argument(..., help="a G run folder with checkpoint.pt, or a bundle (its G is measured, nothing recorded)"),
    model: Path = typer.Option(Path("models/small"), "--model", help="bundle whose C reads the signs"),
    heldout: Path = typer.Option(..., "--heldout", help="held-out phantom folder for FID (never trained on)"),
    archive: Path = typer.Option(..., "--archive", help="labelled archive folder the sign probes learn from"),
    fid_images: Optional[int] = typer.Option(None, "--fid-images", min=2,
                                             help="held-out images and G samples for FID (default 1000)"),
    probe_images: Optional[int] = typer.Option(None, "--probe-images", min=8,
                                               help="labelled archive images the sign probes learn from (default 2000)"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="where the fixed references are kept "
                                         "(default: RUN_DIR/cache/monitor-reference.pt; none for a bundle)"),
) -> None:
    """Measure the run's current G_ema: FID against the held-out images and each sign's share; appended to evals.jsonl."""
    from generation.bundle import GENERATOR, Bundle, is_bundle
    from generation.run_status import EVALS_FILE
    from generation.stylegan2.monitor import MonitorConfig, SnapshotMonitor, generator_from_checkpoint, sign_ratios
    from generation.training import JsonlLogger, RunDir

    sizes = {"fid_images": fid_images, "sign_samples": fid_images, "probe_images": probe_images}
    config = dataclasses.replace(MonitorConfig(), **{k: v for k, v in sizes.items() if v is not None})
    run = RunDir(run_dir)
    from_bundle = is_bundle(run_dir)
    if from_bundle:
        generator, state = Bundle.open(run_dir).load(GENERATOR), {}
    else:
        generator, state = generator_from_checkpoint(run.checkpoint)
    started = time.perf_counter()
    monitor = SnapshotMonitor.build(Bundle.open(model).load_embedder(), heldout, archive, config,
                                    cache=cache or (None if from_bundle else run.root / "cache" / "monitor-reference.pt"))
    result = monitor.measure(generator)
    ratios = sign_ratios(result["sign_shares"], monitor.signs.reference)
    typer.echo(f"{'the bundle' if from_bundle else 'step ' + str(state.get('step'))}: FID {result['fid']:.1f}; "
               "G's sign share / archive's: " + ", ".join(f"{sign} {ratio:.2f}" for sign, ratio in ratios.items()))
    if from_bundle:
        return
    JsonlLogger(run.root / EVALS_FILE).log(
        step=state.get("step"), kimg=state.get("images_seen", 0) / 1000, fid=result["fid"],
        sign_shares=result["sign_shares"], sign_ratios=ratios, reference=monitor.signs.reference,
        heldout_fingerprint=result["heldout_fingerprint"], fid_images=result["fid_images"],
        seconds=round(time.perf_counter() - started, 1), measured=datetime.now(timezone.utc).isoformat(timespec="minutes"))


def register(group: typer.Typer) -> None:
    """Add `s2m train status` and `s2m train monitor` to the train group."""
    add_command(group, "status", status_command)
    add_command(group, "monitor", monitor_command)
