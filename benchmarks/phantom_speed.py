"""Phantom archive generation speed: images per second at a size, for several worker counts.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom_speed.py --count 600 --size 256 --workers 1 2

Reports wall-clock throughput (what a user waits for) and CPU milliseconds per image (what the
renderer costs, independent of other load on a shared machine), plus the load average before each
run so that numbers from a busy machine can be told apart.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from phantoms.dataset import generate_dataset
from phantoms.render import render_case


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def render_only_ms(size: int, count: int) -> float:
    """CPU milliseconds to render one case in this process (no files)."""
    render_case(0, 0, size)  # warm caches
    began = time.process_time()
    for index in range(count):
        render_case(0, index, size)
    return (time.process_time() - began) / count * 1000.0


def generation_run(count: int, size: int, workers: int, seed: int, dicom: bool) -> dict[str, float]:
    """One `generate_dataset` into a fresh temporary folder; timings in seconds and images/s."""
    folder = Path(tempfile.mkdtemp(prefix="phantom-bench-"))
    try:
        load = os.getloadavg()[0]
        cpu_before, began = _cpu_seconds(), time.perf_counter()
        generate_dataset(folder / "ds", count, size, seed, workers=workers, dicom=dicom)
        wall = time.perf_counter() - began
        cpu = _cpu_seconds() - cpu_before
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"workers": workers, "wall_s": wall, "images_per_s": count / wall, "cpu_ms_per_image": cpu / count * 1000, "load_before": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dicom", action="store_true")
    args = parser.parse_args()

    cv2.setNumThreads(1)
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, opencv {cv2.__version__}")
    print(f"render only: {render_only_ms(args.size, 50):.1f} CPU ms per {args.size}px case")
    print("| workers | images | size | wall s | images/s | CPU ms/image | load avg before |")
    print("|---|---|---|---|---|---|---|")
    for workers in args.workers:
        run = generation_run(args.count, args.size, workers, args.seed, args.dicom)
        print(
            f"| {workers} | {args.count} | {args.size} | {run['wall_s']:.1f} | {run['images_per_s']:.1f} | "
            f"{run['cpu_ms_per_image']:.1f} | {run['load_before']:.2f} |"
        )


if __name__ == "__main__":
    main()
