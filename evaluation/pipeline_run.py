"""Sketch2MedI with and without H on held-out phantoms, per sketch folder: DICE by S, perceptual and Fréchet distance.

`generation.pipeline_eval` scores one folder of sketches; this runs it over several (free-hand,
contour, ...) with one set of judges and gathers one report (`benchmarks/bench_pipeline.py`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def run_pipeline_eval(bundle_path: Path, data: Path, sketch_folders: dict[str, Path], count: int, steps: int | None,
                      grid: Path | None = None) -> dict[str, Any]:
    """The report of every sketch folder; the first folder's comparison grid (sketch | x_0 | x_T | reference) to `grid`."""
    import torch

    from generation.bundle import ENCODER, REFINER, SYNTHESIZER, Bundle
    from generation.losses import SimilarityConfig, build_perceptual
    from generation.metrics import load_feature_extractor
    from generation.pipeline import Sketch2MedI
    from generation.pipeline_eval import Judges, PipelineEvalConfig, evaluate_pipeline
    from generation.training import save_image_grid

    device = torch.device("cpu")
    bundle = Bundle.open(bundle_path)
    preset = bundle.config(ENCODER)["preset"]
    pipeline = Sketch2MedI.from_bundle(bundle, device)
    embedder = bundle.load_embedder(device)
    perceptual = build_perceptual(SimilarityConfig.for_preset(preset), embedder).to(device)
    features, features_name = load_feature_extractor(bundle, device)
    judges = Judges(bundle.load(SYNTHESIZER, device), perceptual, perceptual.description(), features, features_name)
    config = PipelineEvalConfig(count=count)

    report: dict[str, Any] = {"bundle": str(bundle_path), "preset": preset, "data": str(data),
                              "encoder_steps": bundle.entry(ENCODER).get("steps"),
                              "refiner_steps": bundle.networks.get(REFINER, {}).get("steps"), "results": {}}
    for index, (name, folder) in enumerate(sketch_folders.items()):
        started = time.time()
        metrics, images = evaluate_pipeline(pipeline, data, folder, judges, config, steps)
        metrics["seconds"] = round(time.time() - started, 1)
        report["results"][name] = metrics
        if index == 0 and grid is not None:
            grid.parent.mkdir(parents=True, exist_ok=True)
            save_image_grid(images, grid, nrow=4)
    return report
