"""`s2m bench`: the speed benchmarks in one go, printed as one table (stage / setting / figure / unit).

It renders a phantom archive at the bundle's side (kept in --work for the next run) and free-hand
query sketches of held-out phantoms, then measures with `api.bench` (the code the scripts in
benchmarks/ run): where an archive image's time goes and the end-to-end `embed_archive` job into
a fresh SQLite archive; the engine's per-stage search latency on that archive (Flat, one query at
a time); the FAISS stage alone on synthetic vectors around the real ones at each --faiss-sizes;
and `/v1/search` of a real `s2m serve` under N closed-loop clients, micro-batching on and off.
The output states the machine, the bundle version and the command; --json writes every number.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import typer

from api.cli.errors import InputError, add_command
from api.cli.eval_report import command_line, git_commit, machine
from generation.presets import SHIPPED_BUNDLE

SECTIONS = ("archive", "stages", "faiss", "service")
BATCHING = ("on", "off")
IVF_NPROBES = (16, 32, 64)  # the nprobe columns docs/benchmarks.md quotes
MIN_FAISS_SIZE = 1000
SEED = 31


def _ints(text: str, option: str, least: int) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"{option} takes comma-separated integers, not {text}") from None
    if not values or min(values) < least:
        raise InputError(f"{option} takes comma-separated integers of at least {least}, not {text}")
    return values


def _names(text: str, option: str, known: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InputError(f"{option} takes some of {', '.join(known)}, not {', '.join(unknown)}")
    return names


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
    wait_ms: float = typer.Option(5.0, "--wait-ms", min=0.0, help="S2M_BATCH_MAX_WAIT_MS when batching is on"),
    skip: str = typer.Option("", "--skip", help="sections to leave out: archive (its step timings), stages, faiss, service"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch and FAISS threads"),
    device: str = typer.Option("cpu", "--device"),
    work: Path = typer.Option(Path("data/bench/s2m-bench"), "--work", help="folder for the rendered phantoms"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write every number here"),
) -> None:
    """Pipeline stages, archive-side throughput, FAISS at 10k-1M, /v1/search under load: one table."""
    sizes = _ints(faiss_sizes, "--faiss-sizes", MIN_FAISS_SIZE)
    concurrency = _ints(clients, "--clients", 1)
    modes = _names(batching, "--batching", BATCHING)
    skipped = _names(skip, "--skip", SECTIONS)
    if "service" not in skipped and not modes:
        raise InputError("--batching needs on, off or both unless --skip service")
    from generation.bundle import Bundle

    version = Bundle.open(model).version
    started = time.perf_counter()
    report: dict[str, Any] = {"meta": {
        "command": command_line(ctx, "bench"), "bundle": str(model), "bundle_version": version, "machine": machine(),
        "code": git_commit(), "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    report.update(run_bench(model, archive_count, stage_images, batch_size, queries, sizes, nlist,
                            {c: max(1, max(requests, 3 * c) // c) for c in concurrency}, modes, wait_ms, skipped,
                            threads, device, work))
    report["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    report["rows"] = table_rows(report)
    typer.echo(render(report))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2))
        typer.echo(f"every number in {json_path}")


def _data(work: Path, count: int, side: int, queries: int) -> tuple[Path, list[Any]]:
    """The archive phantoms (rendered once per count and side) and the query sketches (uint8 arrays)."""
    from phantoms.dataset import generate_dataset
    from phantoms.preview import SketchStyle, case_ids, dataset_categories, draw_sketch, load_case

    archive = work / f"archive-{count}-{side}px-seed{SEED}"
    if not (archive / "annotations.json").exists():
        generate_dataset(archive, count, side, SEED, workers=1)
    heldout = work / f"heldout-{queries}-seed{SEED + 1}"
    if not (heldout / "annotations.json").exists():
        generate_dataset(heldout, queries, 256, SEED + 1, workers=1)
    categories = dataset_categories(heldout)
    sketches = [draw_sketch(load_case(heldout, name, categories), SketchStyle.freehand, SEED + 1) for name in case_ids(heldout)]
    return archive, sketches


def run_bench(model: Path, archive_count: int, stage_images: int, batch_size: int, queries: int, sizes: tuple[int, ...],
              nlist: int, plan: dict[int, int], modes: tuple[str, ...], wait_ms: float, skipped: tuple[str, ...],
              threads: int, device_name: str, work: Path) -> dict[str, Any]:
    """Every section's figures (a skipped section is absent); the archive's DB lives in a temporary folder."""
    import faiss
    import torch
    from PIL import Image

    from api.bench.archive import embed_fresh_archive, stage_times
    from api.bench.search import faiss_scaling, real_vectors, stage_latency
    from api.bench.service import load_service
    from generation.bundle import Bundle
    from generation.data import list_images
    from indexing.archive import Archive
    from indexing.fused_index import BuildConfig, build_index
    from indexing.settings import Settings
    from indexing.shape import ShapeConfig
    from indexing.vectors import ArchiveModels
    from retrieval.engine import EngineConfig, SearchEngine

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    device = torch.device(device_name)
    bundle = Bundle.open(model)
    side = int(bundle.info["resolution"])
    work.mkdir(parents=True, exist_ok=True)
    dataset, sketches = _data(work, archive_count, side, queries)
    models = ArchiveModels.load(bundle, device)
    result: dict[str, Any] = {"threads": threads, "device": str(device), "archive_images": archive_count,
                              "queries": len(sketches), "batch_size": batch_size}
    if "archive" not in skipped:
        paths = list_images(dataset / "images")[:stage_images]
        result["archive_ms_per_image"] = stage_times(models, paths, batch_size, device)
    root = Path(tempfile.mkdtemp(prefix="s2m-bench-", dir=work))
    try:
        settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'archive.sqlite3'}", pseudonym_key=b"s2m-bench")
        result["archive_end_to_end"] = embed_fresh_archive(settings, dataset, models, batch_size)
        del models
        archive = Archive.open(settings)
        try:
            build_index(archive, bundle.version, BuildConfig(shape=ShapeConfig(side=side)))
        finally:
            archive.close()
        if "stages" not in skipped or "faiss" not in skipped:
            engine = SearchEngine.open(settings, EngineConfig(bundle=model, device=device_name))
            try:
                result["build_factory"] = engine.build.factory
                if "stages" not in skipped:
                    result["stages_ms"] = stage_latency(engine, sketches)
                if "faiss" not in skipped:
                    archive = Archive.open(settings)
                    try:
                        real, query_vectors, _ = real_vectors(engine, archive, sketches)
                    finally:
                        archive.close()
                    result["faiss"] = faiss_scaling(real, query_vectors, sizes, root, nlist, pq=False)
            finally:
                engine.close()
        if "service" not in skipped:
            pngs = []
            for sketch in sketches:
                buffer = io.BytesIO()
                Image.fromarray(sketch).save(buffer, format="PNG")
                pngs.append(buffer.getvalue())
            result["service"] = load_service(settings, pngs, plan, list(modes), wait_ms, model=model)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The one table: stage, setting, figure, unit."""
    rows: list[dict[str, Any]] = []

    def add(stage: str, setting: str, figure: float | None, unit: str) -> None:
        if figure is not None:
            rows.append({"stage": stage, "setting": setting, "figure": float(figure), "unit": unit})

    batch = report["batch_size"]
    for step, ms in report.get("archive_ms_per_image", {}).items():
        add("archive", f"{step}, batch {batch}", ms, "ms/image")
    if "archive_ms_per_image" in report:
        add("archive", f"networks total, batch {batch}", 1000 / sum(report["archive_ms_per_image"].values()), "images/s")
    end = report["archive_end_to_end"]
    add("archive", f"embed_archive end to end (SQLite), {end['images']} images", end["images_per_s"], "images/s")
    for stage, figures in report.get("stages_ms", {}).items():
        for quantile, ms in figures.items():
            add("search", f"{stage} {quantile}, {report['build_factory']}, {report['archive_images']} images", ms, "ms")
    for size, entry in report.get("faiss", {}).items():
        for quantile, ms in entry["flat_ms"].items():
            add("faiss", f"{int(size):,} Flat {quantile}", ms, "ms")
        for factory, ivf in ((key, value) for key, value in entry.items() if key.startswith("IVF")):
            for nprobe in IVF_NPROBES:
                figures = ivf[f"nprobe{nprobe}"]
                add("faiss", f"{int(size):,} {factory} nprobe {nprobe} p50", figures["ms"]["p50"], "ms")
                add("faiss", f"{int(size):,} {factory} nprobe {nprobe} re-ranked", figures["recall@10_reranked"], "recall@10")
    for row in report.get("service", []):
        steps = "H's T" if row["refine_steps"] is None else f"T={row['refine_steps']}"
        setting = (f"batching {row['batching']}, {row['clients']} client{'s' if row['clients'] > 1 else ''} "
                   f"({row['concurrency']} at once, {steps})")
        add("service", setting, row["requests_per_s"], "requests/s")
        for quantile in ("p50", "p95", "p99"):
            add("service", f"{setting} {quantile}", row[f"{quantile}_ms"], "ms")
        add("service", f"{setting} mean batch", row["mean_batch"], "searches")
        rows.append({"stage": "service", "setting": f"{setting} errors", "figure": float(row["errors"]), "unit": "requests"})
    return rows


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
