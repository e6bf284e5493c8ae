"""Load on the real HTTP service: requests/s and latency of POST /v1/search at 1-64 concurrent clients,
with micro-batching on and off, on a 10k-image archive embedded with the shipped bundle.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/service_load.py prepare --work data/bench/service
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/service_load.py run --work data/bench/service

`prepare` renders 10,000 phantoms (64 px), ingests them into SQLite, embeds them with S, C and E
and builds the Flat index (resumable: each step skips what is done), and draws free-hand query
sketches of 64 held-out phantoms (PNG, 256 px). `run` starts `s2m serve` as its own process for
each batching setting, warms it up, then for each concurrency N runs N clients, each sending its
requests one after another (multipart PNG upload, k = 10, H's T steps or `S2M_REFINE_STEPS`), and writes a JSON
report (appending to an existing one): requests/s, p50/p95/p99 ms, errors, the mean batch size
(from /metrics) and the load average. The engine keeps the stored vectors of recently used cases
in memory; each batching setting starts a fresh server, so each starts with an empty cache.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from api.bench.service import REPO, load_service

ARCHIVE_SIZE = 10_000
QUERIES = 64
SEED = 31
HELDOUT_SEED = 32


def _settings(work: Path):  # type: ignore[no-untyped-def]
    from indexing.settings import Settings

    return Settings(data_dir=work / "data", database_url=f"sqlite:///{work / 'archive.sqlite3'}", pseudonym_key=b"bench-service")


def prepare(work: Path, size: int) -> None:
    import torch
    from PIL import Image

    from generation.presets import SHIPPED_BUNDLE
    from indexing import store
    from indexing.archive import Archive
    from indexing.fused_index import build_index
    from indexing.ingest.run import ingest_path
    from indexing.vectors import ArchiveModels, embed_archive
    from phantoms.dataset import generate_dataset
    from phantoms.preview import SketchStyle, dataset_categories, draw_sketch, load_case

    phantoms = work / "phantoms"
    if not (phantoms / "metadata.csv").exists():
        generate_dataset(phantoms, size, 64, SEED, workers=2)
    heldout = work / "heldout"
    if not (heldout / "metadata.csv").exists():
        generate_dataset(heldout, QUERIES, 256, HELDOUT_SEED, workers=1)
    queries = work / "queries"
    queries.mkdir(exist_ok=True)
    categories = dataset_categories(heldout)
    for path in sorted((heldout / "images").glob("*.png")):
        target = queries / path.name
        if not target.exists():
            Image.fromarray(draw_sketch(load_case(heldout, path.stem, categories), SketchStyle.freehand, HELDOUT_SEED)).save(target)
    settings = _settings(work)
    archive = Archive.create(settings)
    try:
        started = time.perf_counter()
        ingest_path(archive, phantoms, None, None, progress=False)
        print(f"ingested in {time.perf_counter() - started:.0f} s", flush=True)
        models = ArchiveModels.load(SHIPPED_BUNDLE, torch.device("cpu"))
        started = time.perf_counter()
        report = embed_archive(archive, models, batch_size=32,
                               on_batch=lambda done, total: print(f"embedded {done}/{total}", flush=True) if done % 640 < 32 else None)
        print(f"embedded {report.embedded} in {time.perf_counter() - started:.0f} s", flush=True)
        with archive.sessions() as session:
            active = store.active_index_build(session)
        if active is None:
            build_index(archive, models.version)
    finally:
        archive.close()
    print("prepared", flush=True)


def run(work: Path, report_path: Path, requests_per_client: dict[int, int], batching: list[str], wait_ms: float) -> None:
    sketches = [path.read_bytes() for path in sorted((work / "queries").glob("*.png"))]
    report = json.loads(report_path.read_text()) if report_path.exists() else {"runs": []}
    report.setdefault("machines", []).append(f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}")

    def record(row: dict) -> None:
        print(json.dumps(row), flush=True)
        report["runs"].append(row)
        report_path.write_text(json.dumps(report, indent=2))

    load_service(_settings(work), sketches, requests_per_client, batching, wait_ms, on_row=record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["prepare", "run"])
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench" / "service")
    parser.add_argument("--size", type=int, default=ARCHIVE_SIZE)
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--requests", type=str, default="1:24,4:48,16:96,64:192",
                        help="clients:total requests, comma-separated")
    parser.add_argument("--batching", type=str, default="on,off")
    parser.add_argument("--wait-ms", type=float, default=5.0, help="S2M_BATCH_MAX_WAIT_MS when batching is on")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.step == "prepare":
        prepare(args.work, args.size)
        return
    plan = {}
    for item in args.requests.split(","):
        clients, total = (int(part) for part in item.split(":"))
        plan[clients] = max(1, total // clients)
    run(args.work, args.report or args.work / "service_load.json", plan, args.batching.split(","), args.wait_ms)


if __name__ == "__main__":
    main()
