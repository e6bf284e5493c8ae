"""Sketch2MedI with and without H on held-out phantoms: DICE by S, perceptual distance, Fréchet distance.

Run (after `s2m phantom sketch DATA --style freehand --out SKETCHES`):
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pipeline.py --bundle models/small \
      --data data/phantoms64-heldout --sketches freehand=data/phantoms64-heldout-freehand \
      --sketches contour=data/phantoms64-heldout-contour --count 500 \
      --json runs/bench-pipeline.json --grid docs/sketch2medi_comparison.png

Prints one markdown table row per sketch kind and writes the metrics JSON and the comparison grid
(sketch | x_0 | x_T | reference) of the first sketch kind.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evaluation.pipeline_run import run_pipeline_eval
from generation.pipeline_eval import PipelineEvalConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="held-out phantom dataset folder")
    parser.add_argument("--sketches", action="append", required=True, help="NAME=FOLDER of sketches of --data")
    parser.add_argument("--count", type=int, default=PipelineEvalConfig.count)
    parser.add_argument("--steps", type=int, default=None, help="T; default: what H was trained with")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--grid", type=Path, default=None)
    args = parser.parse_args()

    folders = {name: Path(folder) for name, folder in (entry.split("=", 1) for entry in args.sketches)}
    report = run_pipeline_eval(args.bundle, args.data, folders, args.count, args.steps, args.grid)
    for name, metrics in report["results"].items():
        x0, xt = metrics["x0"], metrics["xT"]
        print(f"| {name} | {metrics['count']} | {x0['dice']['mean']:.2f} | {xt['dice']['mean']:.2f} | "
              f"{metrics['dice_gain_points']:+.2f} | {x0['perceptual_mean']:.3f} | {xt['perceptual_mean']:.3f} | "
              f"{x0['frechet']:.2f} | {xt['frechet']:.2f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
