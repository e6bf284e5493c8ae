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
import time
from pathlib import Path

import torch

from generation.bundle import ENCODER, REFINER, SYNTHESIZER, Bundle
from generation.losses import SimilarityConfig, build_perceptual
from generation.metrics import load_feature_extractor
from generation.pipeline import Sketch2MedI
from generation.pipeline_eval import Judges, PipelineEvalConfig, evaluate_pipeline
from generation.training import save_image_grid


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

    device = torch.device("cpu")
    bundle = Bundle.open(args.bundle)
    preset = bundle.config(ENCODER)["preset"]
    pipeline = Sketch2MedI.from_bundle(bundle, device)
    embedder = bundle.load_embedder(device)
    perceptual = build_perceptual(SimilarityConfig.for_preset(preset), embedder).to(device)
    features, features_name = load_feature_extractor(bundle, device)
    judges = Judges(bundle.load(SYNTHESIZER, device), perceptual, perceptual.description(), features, features_name)
    config = PipelineEvalConfig(count=args.count)

    report = {"bundle": str(args.bundle), "preset": preset, "data": str(args.data),
              "encoder_steps": bundle.entry(ENCODER).get("steps"),
              "refiner_steps": bundle.networks.get(REFINER, {}).get("steps"), "results": {}}
    for index, entry in enumerate(args.sketches):
        name, folder = entry.split("=", 1)
        started = time.time()
        metrics, grid = evaluate_pipeline(pipeline, args.data, Path(folder), judges, config, args.steps)
        metrics["seconds"] = round(time.time() - started, 1)
        report["results"][name] = metrics
        if index == 0 and args.grid is not None:
            args.grid.parent.mkdir(parents=True, exist_ok=True)
            save_image_grid(grid, args.grid, nrow=4)
        x0, xt = metrics["x0"], metrics["xT"]
        print(f"| {name} | {metrics['count']} | {x0['dice']['mean']:.2f} | {xt['dice']['mean']:.2f} | "
              f"{metrics['dice_gain_points']:+.2f} | {x0['perceptual_mean']:.3f} | {xt['perceptual_mean']:.3f} | "
              f"{x0['frechet']:.2f} | {xt['frechet']:.2f} |", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
