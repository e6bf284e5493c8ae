"""`s2m bench`: the speed benchmarks in one go (`evaluation.bench`), printed as one table (stage / setting / figure / unit).

The output states the machine, the bundle version and the command; --json writes every number.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import typer

from api.cli.errors import InputError, add_command
from api.cli.run_options import comma_ints, comma_names
from evaluation.bench.run import BATCHING, MIN_FAISS_SIZE, SECTIONS
from generation.presets import SHIPPED_BUNDLE


def bench(
    ctx: typer.Context,
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="model bundle folder"),
    archive_count: int = typer.Option(10_000, "--archive", min=8, help="phantoms in the benchmark archive"),
    stage_images: int = typer.Option(256, "--stage-images", min=1, help="archive images timed step by step"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="archive-side batch"),
    queries: int = typer.Option(64, "--queries", min=1, help="free-hand query sketches (held-out phantoms)"),
    faiss_sizes: str = typer.Option("10000,100000,1000000", "--faiss-sizes", help="synthetic index sizes, comma-separated"),
    nlist: int = typer.Option(1024, "--nlist", min=1, help="IVF lists (capped at size / 40)"),
    clients: str = typer.Option("1,4,16,64", "--clients", help="concurrent clients of the service, comma-separated"),
    requests: int = typer.Option(24, "--requests", min=1, help="requests per client count (at least 3 per client)"),
    batching: str = typer.Option("on,off", "--batching", help="micro-batching settings of the service: on, off"),
    replicas: str = typer.Option("1", "--replicas", help="service replicas, comma-separated (more than one: behind "
                                                          "Debian's nginx as docs/nginx-sketch2medi.conf deploys them)"),
    wait_ms: float = typer.Option(5.0, "--wait-ms", min=0.0, help="S2M_BATCH_MAX_WAIT_MS when batching is on"),
    skip: str = typer.Option("", "--skip", help="sections to leave out: archive (its step timings), stages, faiss, service, "
                                                "train (E's and H's training step)"),
    train_steps: int = typer.Option(20, "--train-steps", min=1, help="timed training steps of E and of H"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch and FAISS threads"),
    device: str = typer.Option("cpu", "--device"),
    work: Path = typer.Option(Path("data/bench/s2m-bench"), "--work", help="folder for the rendered phantoms"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write every number here"),
) -> None:
    """Pipeline stages, archive-side throughput, FAISS at 10k-1M, /v1/search under load, E's and H's training step: one table."""
    sizes = comma_ints(faiss_sizes, "--faiss-sizes", MIN_FAISS_SIZE)
    concurrency = comma_ints(clients, "--clients", 1)
    modes = comma_names(batching, "--batching", BATCHING)
    skipped = comma_names(skip, "--skip", SECTIONS)
    replica_counts = comma_ints(replicas, "--replicas", 1)
    if "service" not in skipped and max(replica_counts) > 1:
        from evaluation.bench.proxy import nginx_binary

        if nginx_binary() is None:
            raise InputError("--replicas above 1 needs nginx (scripts/ensure-nginx.sh installs Debian's package)")
    if "service" not in skipped and not modes:
        raise InputError("--batching needs on, off or both unless --skip service")
    from evaluation.bench.run import run_bench, table_rows
    from evaluation.provenance import command_line, git_commit, machine
    from generation.bundle import Bundle

    version = Bundle.open(model).version
    started = time.perf_counter()
    report: dict[str, Any] = {"meta": {
        "command": command_line(ctx, "bench"), "bundle": str(model), "bundle_version": version, "machine": machine(),
        "code": git_commit(), "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    report.update(run_bench(model, archive_count, stage_images, batch_size, queries, sizes, nlist,
                            {c: max(1, max(requests, 3 * c) // c) for c in concurrency}, modes, wait_ms, skipped,
                            threads, device, work, _server_shape, train_steps, replica_counts))
    report["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    report["rows"] = table_rows(report)
    typer.echo(render(report))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2))
        typer.echo(f"every number in {json_path}")


def _server_shape(environ: dict[str, str]) -> tuple[int, int | None]:
    """What `s2m serve` does with `environ`: searches at once and H's steps T (None: what H was trained with)."""
    from api.settings import ServiceSettings

    served = ServiceSettings.from_env(environ)
    return served.concurrency, served.refine_steps


def _figure(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(report: dict[str, Any]) -> str:
    """The header (machine, bundle, command) and the table as Markdown, so that docs/benchmarks.md can quote it."""
    meta, cpu = report["meta"], report["meta"]["machine"]
    threads = ", ".join(f"{name}={value}" for name, value in cpu["threads"].items() if value is not None) or "unset"
    lines = [f"machine: {cpu['cpu']}, {cpu['cores']} cores ({cpu['usable_cores']} usable), {report['threads']} torch/FAISS "
             f"thread(s), {threads}, load average {os.getloadavg()[0]:.1f}, device {report['device']}",
             f"bundle: {meta['bundle']} (version {meta['bundle_version']}), code {meta['code']}, {meta['measured']}, "
             f"{meta['seconds']} s",
             f"command: {meta['command']}", "",
             "| stage | setting | figure | unit |", "|---|---|---|---|"]
    lines += [f"| {row['stage']} | {row['setting']} | {_figure(row['figure'])} | {row['unit']} |" for row in report["rows"]]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add `s2m bench` to the top-level app."""
    add_command(app, "bench", bench)
