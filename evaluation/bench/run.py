"""`s2m bench`: the speed benchmarks in one go, as rows of one table (stage / setting / figure / unit).

It renders a phantom archive at the bundle's side (kept in `work` for the next run) and free-hand
query sketches of held-out phantoms, then measures where an archive image's time goes and the
end-to-end embedding job into a fresh SQLite archive (`indexing.prepare`, DB writes included); the
engine's per-stage search latency on that archive (Flat, one query at a time) and, when the bundle
has sign directions, what applying every sign costs a query (`search.sign_cost`); the FAISS stage
alone on synthetic vectors around the real ones at each size; `/v1/search` of a real
`s2m serve` under N closed-loop clients, micro-batching on and off; and a training step of E and
of H on the bundle's networks (`evaluation.bench.train_step`).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evaluation.bench.service import ServerShape

SECTIONS = ("archive", "stages", "faiss", "service", "train")
BATCHING = ("on", "off")
IVF_NPROBES = (16, 32, 64)  # the nprobe columns docs/benchmarks.md quotes
MIN_FAISS_SIZE = 1000
SEED = 31


def bench_data(work: Path, count: int, side: int, queries: int) -> tuple[Path, list[Any]]:
    """The archive phantoms (rendered once per count and side) and the query sketches (uint8 arrays)."""
    from phantoms.dataset import generate_dataset
    from phantoms.preview import SketchStyle, draw_sketch
    from phantoms.reader import case_ids, dataset_categories, load_case

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
              threads: int, device_name: str, work: Path, server_shape: "ServerShape", train_steps: int = 20,
              replicas: tuple[int, ...] = (1,)) -> dict[str, Any]:
    """Every section's figures (a skipped section is absent); the archive's DB lives in a temporary folder."""
    import faiss
    import torch
    from PIL import Image

    from evaluation.bench.archive import stage_times
    from evaluation.bench.search import faiss_scaling, real_vectors, sign_cost, stage_latency
    from evaluation.bench.service import load_service
    from generation.bundle import Bundle
    from generation.data import list_images
    from indexing.archive import Archive
    from indexing.prepare import EMBED, INGEST, prepare_archive
    from indexing.settings import Settings
    from indexing.vectors import ArchiveModels
    from retrieval.engine import EngineConfig, SearchEngine

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    device = torch.device(device_name)
    bundle = Bundle.open(model)
    side = bundle.resolution
    work.mkdir(parents=True, exist_ok=True)
    dataset, sketches = bench_data(work, archive_count, side, queries)
    models = ArchiveModels.load(bundle, device)
    result: dict[str, Any] = {"threads": threads, "device": str(device), "archive_images": archive_count,
                              "queries": len(sketches), "batch_size": batch_size}
    if "train" not in skipped:
        from evaluation.bench.train_step import train_step_figures

        result["train_steps"] = train_step_figures(model, work, side, train_steps, SEED + 2, device_name)
    if "archive" not in skipped:
        paths = list_images(dataset / "images")[:stage_images]
        result["archive_ms_per_image"] = stage_times(models, paths, batch_size, device)
    root = Path(tempfile.mkdtemp(prefix="s2m-bench-", dir=work))
    try:
        settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'archive.sqlite3'}", pseudonym_key=b"s2m-bench")
        prepared = prepare_archive(settings, dataset, bundle, device, models=models, batch_size=batch_size)
        del models
        done = prepared.embedded.embedded if prepared.embedded is not None else 0  # a fresh archive: every step ran
        seconds = prepared.seconds
        result["archive_end_to_end"] = {"images": done, "ingest_s": seconds[INGEST], "seconds": seconds[EMBED],
                                        "images_per_s": done / seconds[EMBED]}
        if "stages" not in skipped or "faiss" not in skipped:
            engine = SearchEngine.open(settings, EngineConfig(bundle=model, device=device_name))
            try:
                result["build_factory"] = engine.build.factory
                if "stages" not in skipped:
                    result["stages_ms"] = stage_latency(engine, sketches)
                    result["signs"] = sign_cost(engine, sketches)  # None: the bundle has no sign directions
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
            result["service"] = load_service(settings, pngs, plan, list(modes), wait_ms, server_shape, model=model,
                                             replicas=replicas)
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
    if report.get("signs"):
        signs, where = report["signs"], f"{report['build_factory']}, {report['archive_images']} images"
        for quantile in ("p50", "p95"):
            add("search", f"signs applied ({signs['signs']} present: check, W and appearance edits) {quantile}",
                signs["apply_ms"][quantile], "ms")
        for label, key in (("with", "total_ms_with"), ("without", "total_ms_without")):
            add("search", f"total p50 {label} {signs['signs']} signs, {where}", signs[key]["p50"], "ms")
    for size, entry in report.get("faiss", {}).items():
        for quantile, ms in entry["flat_ms"].items():
            add("faiss", f"{int(size):,} Flat {quantile}", ms, "ms")
        for factory, ivf in ((key, value) for key, value in entry.items() if key.startswith("IVF")):
            for nprobe in IVF_NPROBES:
                figures = ivf[f"nprobe{nprobe}"]
                add("faiss", f"{int(size):,} {factory} nprobe {nprobe} p50", figures["ms"]["p50"], "ms")
                add("faiss", f"{int(size):,} {factory} nprobe {nprobe} re-ranked", figures["recall@10_reranked"], "recall@10")
    for loop, entry in report.get("train_steps", {}).items():
        name = f"{'E' if loop == 'encoder' else 'H'} step, batch {entry['batch_size']}"
        add("train", f"{name}, CPU time", entry["step_cpu_s"], "s")
        add("train", f"{name}, wall time", entry["step_wall_s"], "s")
        for part, ms in entry["parts_ms"].items():
            add("train", f"{name}: {part}", ms, "ms")
    for row in report.get("service", []):
        steps = "H's T" if row["refine_steps"] is None else f"T={row['refine_steps']}"
        behind = f"{row['replicas']} replicas behind nginx, " if row.get("replicas", 1) > 1 else ""
        setting = (f"{behind}batching {row['batching']}, {row['clients']} client{'s' if row['clients'] > 1 else ''} "
                   f"({row['concurrency']} at once{' each' if behind else ''}, {steps})")
        add("service", setting, row["requests_per_s"], "requests/s")
        for quantile in ("p50", "p95", "p99"):
            add("service", f"{setting} {quantile}", row[f"{quantile}_ms"], "ms")
        add("service", f"{setting} mean batch", row["mean_batch"], "searches")
        rows.append({"stage": "service", "setting": f"{setting} errors", "figure": float(row["errors"]), "unit": "requests"})
    return rows
