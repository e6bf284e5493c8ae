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

from evaluation.bench.data_speed import ingest_dataset, ingest_run
from indexing.settings import DEFAULT_INGEST_BATCH_SIZE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="phantom generation workers")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_INGEST_BATCH_SIZE)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    args = parser.parse_args()

    dataset = ingest_dataset(args.count, args.size, args.seed, args.workers)
    print(f"# ingest of {args.count} phantoms at {args.size} px, batch {args.batch_size}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("| backend | images | annotations | seconds | images/s | CPU ms/image | re-ingest images/s | load before |")
    print("|---|---|---|---|---|---|---|---|")
    for backend in args.backends:
        result = ingest_run(backend, dataset, args.batch_size)
        print(
            f"| {backend} | {result['added']} | {result['annotations']} | {result['seconds']:.1f} | "
            f"{result['images_per_s']:.0f} | {result['cpu_ms_per_image']:.2f} | "
            f"{result['reingest_images_per_s']:.0f} | {result['load_before']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
