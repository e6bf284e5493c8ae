"""Archive ingest throughput: images per second into SQLite and PostgreSQL, from a phantom dataset.

Run (generates the dataset once under data/bench-ingest-<count>-<size>, then reuses it):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ingest_speed.py --count 10000 --size 64

Each backend ingests into a fresh archive (temporary data dir; PostgreSQL gets a throwaway
database on 127.0.0.1:5432, dropped afterwards). Reports wall-clock images/s (what an admin waits
for), CPU ms per image of this process, the re-ingest (all duplicates) rate, and the load average
before each run, so that numbers from a busy shared machine can be told apart.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from indexing.archive import Archive
from indexing.db import make_engine
from indexing.ingest.run import ingest_path
from indexing.settings import DEFAULT_INGEST_BATCH_SIZE, Settings

PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
BENCH_KEY = b"benchmark-pseudonym-key"


def _dataset(count: int, size: int, seed: int, workers: int) -> Path:
    from phantoms.dataset import generate_dataset

    folder = Path("data") / f"bench-ingest-{count}-{size}-{seed}"
    if not (folder / "metadata.csv").is_file():
        generate_dataset(folder, count, size, seed, workers=workers)
    return folder


def _run(backend: str, dataset: Path, batch_size: int) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    pg_name = f"s2m_bench_{uuid.uuid4().hex[:8]}"
    admin = None
    if backend == "postgresql":
        admin = make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{pg_name}"
    else:
        url = f"sqlite:///{data_dir / 'archive.sqlite3'}"
    settings = Settings(data_dir=data_dir, database_url=url, pseudonym_key=BENCH_KEY, ingest_batch_size=batch_size)
    archive = Archive.create(settings)
    try:
        load = os.getloadavg()[0]
        cpu, began = time.process_time(), time.perf_counter()
        report = ingest_path(archive, dataset)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        again_began = time.perf_counter()
        again = ingest_path(archive, dataset)
        again_wall = time.perf_counter() - again_began
        assert again.added == 0 and again.already_present == report.added, "re-ingest must add nothing"
        return {
            "added": report.added,
            "annotations": report.annotations_added,
            "seconds": wall,
            "images_per_s": report.added / wall,
            "cpu_ms_per_image": cpu / max(report.added, 1) * 1000.0,
            "reingest_images_per_s": again.already_present / again_wall,
            "load_before": load,
        }
    finally:
        archive.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="phantom generation workers")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_INGEST_BATCH_SIZE)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    args = parser.parse_args()

    dataset = _dataset(args.count, args.size, args.seed, args.workers)
    print(f"# ingest of {args.count} phantoms at {args.size} px, batch {args.batch_size}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("| backend | images | annotations | seconds | images/s | CPU ms/image | re-ingest images/s | load before |")
    print("|---|---|---|---|---|---|---|---|")
    for backend in args.backends:
        result = _run(backend, dataset, args.batch_size)
        print(
            f"| {backend} | {result['added']} | {result['annotations']} | {result['seconds']:.1f} | "
            f"{result['images_per_s']:.0f} | {result['cpu_ms_per_image']:.2f} | "
            f"{result['reingest_images_per_s']:.0f} | {result['load_before']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
