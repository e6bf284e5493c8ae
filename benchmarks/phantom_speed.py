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

import cv2
import numpy as np

from evaluation.bench.data_speed import generation_run, render_only_ms


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
