"""How well Sketch2MedI follows a sketch, with and without H (paper section IV-B, originality).

For held-out photos x and sketches of them: mean per-class DICE between S(x) and S(x_hat), a
perceptual distance (named: LPIPS or its substitute), and a Fréchet distance of x_hat against
the photos in a named feature space; each for x_0 = G(E(x_sk)) and for x_T after T steps of H.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from generation.data import SketchImagePairs
from generation.metrics import FeatureExtractor, frechet_distance
from generation.pipeline import Sketch2MedI
from generation.solov2.metrics import class_dice, mean_class_dice


PERCENT = 100.0


@dataclass(frozen=True)
class PipelineEvalConfig:
    count: int = 500
    batch_size: int = 50
    grid_rows: int = 8
    confidence_z: float = 1.96  # two-sided 95 % normal interval of the paired DICE gain


@dataclass(frozen=True)
class Judges:
    """The frozen networks that score the outputs, with the names every report carries."""

    synthesizer: nn.Module  # S: .predict(images) -> instances per image
    perceptual: nn.Module  # (x, y) -> [B] distances
    perceptual_name: str
    features: FeatureExtractor  # .embed(images) -> [N, D]
    features_name: str


@torch.no_grad()
def evaluate_pipeline(
    pipeline: Sketch2MedI, dataset: Path, sketches: Path, judges: Judges, config: PipelineEvalConfig,
    steps: int | None = None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Metrics of x_0 and x_T on the first `count` pairs, and the grid rows (sketch | x_0 | x_T | x).

    Returns (metrics, grid [grid_rows * 4, 3, R, R]).
    """
    pairs = SketchImagePairs(dataset, sketches, pipeline.resolution, limit=config.count)
    if len(pairs) < config.count:
        raise ValueError(f"{dataset} has {len(pairs)} sketched photos, fewer than the {config.count} asked for")
    device = pipeline.encoder.w_avg.device
    dice: dict[str, list[dict[int, float]]] = {"x0": [], "xT": []}
    distances: dict[str, list[torch.Tensor]] = {"x0": [], "xT": []}
    generated: dict[str, list[torch.Tensor]] = {"x0": [], "xT": []}
    references: list[torch.Tensor] = []
    for start in range(0, config.count, config.batch_size):
        batch = [pairs[i] for i in range(start, min(start + config.batch_size, config.count))]
        sketch_batch = torch.stack([s for s, _ in batch]).to(device)  # [B, 1, R, R]
        photos = torch.stack([x for _, x in batch]).to(device)  # [B, 3, R, R]
        output = pipeline.run(sketch_batch, steps)
        outputs = {"x0": output.x_0, "xT": output.image}
        truth = judges.synthesizer.predict(photos)
        for key, images in outputs.items():
            predicted = judges.synthesizer.predict(images)
            dice[key] += [class_dice(p, r) for p, r in zip(predicted, truth)]
            distances[key].append(judges.perceptual(photos, images).cpu())
            generated[key].append(images.cpu())
        references.append(photos.cpu())
        if start == 0:
            rows = slice(0, config.grid_rows)
            grid = torch.stack([sketch_batch[rows].expand(-1, 3, -1, -1), outputs["x0"][rows], outputs["xT"][rows], photos[rows]],
                               dim=1).flatten(0, 1).cpu()  # [rows * 4, 3, R, R]
    real_features = judges.features.embed(torch.cat(references)).numpy()
    metrics: dict[str, Any] = {
        "count": config.count,
        "refinement_steps": len(output.steps),
        "perceptual": judges.perceptual_name,
        "frechet_features": judges.features_name,
    }
    for key in ("x0", "xT"):
        per_image = torch.cat(distances[key])
        metrics[key] = {
            "dice": {name: PERCENT * value for name, value in mean_class_dice(dice[key]).items()},
            "perceptual_mean": float(per_image.mean()),
            "perceptual_std": float(per_image.std()),
            "frechet": frechet_distance(judges.features.embed(torch.cat(generated[key])).numpy(), real_features),
        }
    metrics["dice_gain_points"] = metrics["xT"]["dice"]["mean"] - metrics["x0"]["dice"]["mean"]
    metrics["paired_dice_gain"] = paired_gain(dice["x0"], dice["xT"], config.confidence_z)
    return metrics, grid


def paired_gain(before: list[dict[int, float]], after: list[dict[int, float]], z: float) -> dict[str, float]:
    """Per-image mean-class DICE gain of x_T over x_0 (points): mean, normal interval, share improved."""
    gains = np.array([PERCENT * (np.mean(list(a.values())) - np.mean(list(b.values())))
                      for b, a in zip(before, after) if a and b])
    if len(gains) < 2:
        return {"images": float(len(gains))}
    half_width = z * gains.std(ddof=1) / np.sqrt(len(gains))
    return {"images": float(len(gains)), "mean": float(gains.mean()), "low": float(gains.mean() - half_width),
            "high": float(gains.mean() + half_width), "share_improved": float((gains > 0).mean())}

