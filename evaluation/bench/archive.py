"""Archive-side speed: where each image's time goes (S, C, E, the sketch), step by step."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from formats.sketch import SketchError, canonical_sketch
from generation.data import box_resize, image_to_tensor, load_rgb
from generation.solov2.model import sketch_from_instances
from indexing.vectors import ArchiveModels

STEPS = ("read", "s_forward", "s_decode", "sketch", "c_describe", "e_latent")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def stage_times(models: ArchiveModels, paths: list[Path], batch_size: int, device: torch.device) -> dict[str, float]:
    """Milliseconds per image of each step `indexing.vectors.embed_archive` runs, on images read from disk."""
    steps = dict.fromkeys(STEPS, 0.0)
    synthesizer = models.synthesizer
    threshold = synthesizer.config.score_threshold
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            t = time.perf_counter()
            images = torch.stack([image_to_tensor(load_rgb(p, models.resolution)) for p in paths[start : start + batch_size]]).to(device)
            _sync(device)
            steps["read"] += time.perf_counter() - t
            t = time.perf_counter()
            categories, kernels, features = synthesizer(box_resize(images, synthesizer.config.resolution))
            _sync(device)
            steps["s_forward"] += time.perf_counter() - t
            t = time.perf_counter()
            instances = [synthesizer._instances_of_image([c[b] for c in categories], [k[b] for k in kernels], features[b],
                                                         images.shape[-2:], threshold) for b in range(len(images))]
            steps["s_decode"] += time.perf_counter() - t
            t = time.perf_counter()
            sketches = np.full((len(images), models.resolution, models.resolution), 255, np.uint8)
            for row, found in enumerate(instances):
                try:
                    sketches[row] = canonical_sketch(sketch_from_instances(found, threshold), models.resolution)
                except SketchError:
                    pass
            steps["sketch"] += time.perf_counter() - t
            t = time.perf_counter()
            models.appearances(images)
            _sync(device)
            steps["c_describe"] += time.perf_counter() - t
            t = time.perf_counter()
            models.latents(sketches)
            _sync(device)
            steps["e_latent"] += time.perf_counter() - t
    return {name: 1000 * seconds / len(paths) for name, seconds in steps.items()}
