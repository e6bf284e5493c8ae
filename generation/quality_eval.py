"""Table I on held-out sketches: each generator row's images scored against the reference photos.

Per sample (one sketch of one held-out photo x): mean per-class DICE of S(x_hat) against S(x)
and against the phantom's annotated instances, the perceptual distance (its backbone named by the
judges) and SSIM; per row, the Inception-v3 and C features of every generated image, so that FID,
KID and the Fréchet distance on C's features can be computed over any subset of the samples (a
drawer style, an abstraction level) against the features of all reference photos.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from generation.metrics import FeatureExtractor, frechet_distance, kernel_inception_distance, KidConfig, ssim
from generation.pipeline import Sketch2MedI
from generation.pipeline_eval import PERCENT, Judges
from generation.solov2.instances import Instance
from generation.solov2.metrics import class_dice

PIX2PIX_ROW, WITHOUT_H_ROW, SKETCH2MEDI_ROW = "pix2pix", "sketch2medi_without_h", "sketch2medi"
NOT_RUN_ROWS = ("cyclegan", "unit", "ugatit")  # the paper's other baselines: listed, never run here

# sketches [B, 1, R, R] in [-1, 1] -> images [B, 3, R, R] in [-1, 1]
Generate = Callable[[torch.Tensor], torch.Tensor]


def sketch2medi_rows(pipeline: Sketch2MedI, steps: int | None = None) -> dict[str, Generate]:
    """x_0 = G(E(x_sk)) (without H) and x_T (with H); run apart so that each row's time is its own."""
    return {WITHOUT_H_ROW: lambda sketches: pipeline.run(sketches, 0).x_0,
            SKETCH2MEDI_ROW: lambda sketches: pipeline.run(sketches, steps).image}


def pix2pix_row(generator: torch.nn.Module) -> dict[str, Generate]:
    return {PIX2PIX_ROW: lambda sketches: generator(sketches.to(next(generator.parameters()).device))}


@dataclass(frozen=True)
class QualityJudges:
    """S, the perceptual distance and the FID Inception (in `judges`), and C's features for the domain Fréchet."""

    judges: Judges  # judges.features must be the FID Inception-v3
    domain: FeatureExtractor
    domain_name: str


@dataclass
class RowScores:
    """One row's per-sample values ([N] each; DICE in points, NaN where neither side has an object) and features."""

    dice_s: list[float] = field(default_factory=list)
    dice_truth: list[float] = field(default_factory=list)
    perceptual: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    inception: list[np.ndarray] = field(default_factory=list)
    domain: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0

    def arrays(self) -> dict[str, np.ndarray]:
        return {"dice_s": np.array(self.dice_s), "dice_truth": np.array(self.dice_truth),
                "perceptual": np.array(self.perceptual), "ssim": np.array(self.ssim)}


@dataclass(frozen=True)
class QualityScores:
    """Every row's `RowScores` over the same samples, the reference features and the requested images."""

    rows: dict[str, RowScores]
    reference_inception: np.ndarray  # [P, 2048]: every reference photo once
    reference_domain: np.ndarray  # [P, D]
    kept: dict[str, torch.Tensor]  # row name (and "sketch", "reference") -> [K, 3, R, R] of the `keep` samples


def mean_dice(predicted: Sequence[Instance], reference: Sequence[Instance]) -> float:
    """Mean per-class DICE in points (100 identical, 0 disjoint); NaN when neither has an object."""
    scores = class_dice(predicted, reference)
    return PERCENT * float(np.mean(list(scores.values()))) if scores else float("nan")


@torch.no_grad()
def score_generators(generators: dict[str, Generate], sketches: torch.Tensor, photos: torch.Tensor,
                     photo_of: np.ndarray, truths: Sequence[Sequence[Instance]], judges: QualityJudges,
                     keep: Sequence[int] = (), batch_size: int = 50) -> QualityScores:
    """Score every row (name -> generator) on sketches [N, 1, R, R] of photos [P, 3, R, R] (sample i draws
    photo `photo_of[i]`, whose annotated instances are `truths[photo_of[i]]`)."""
    s, base = judges.judges.synthesizer, judges.judges
    photo_instances = [s.predict(photos[i:i + batch_size]) for i in range(0, len(photos), batch_size)]
    by_s = [instances for batch in photo_instances for instances in batch]
    rows: dict[str, RowScores] = {}
    kept: dict[str, list[torch.Tensor]] = {"sketch": [], "reference": []}
    keep_set = set(keep)
    for start in range(0, len(sketches), batch_size):
        index = np.arange(start, min(start + batch_size, len(sketches)))
        batch, references = sketches[index], photos[photo_of[index]]
        outputs: dict[str, torch.Tensor] = {}
        for name, generate in generators.items():
            started = time.perf_counter()
            outputs[name] = generate(batch)
            rows.setdefault(name, RowScores()).seconds += time.perf_counter() - started
        chosen = [i for i, sample in enumerate(index) if sample in keep_set]
        if chosen:
            kept["sketch"].append(batch[chosen].expand(-1, 3, -1, -1))
            kept["reference"].append(references[chosen])
        for name, images in outputs.items():
            row = rows[name]
            images = images.to(references.device).clamp(-1, 1)
            predicted = s.predict(images)
            row.dice_s += [mean_dice(p, by_s[photo_of[i]]) for p, i in zip(predicted, index)]
            row.dice_truth += [mean_dice(p, truths[photo_of[i]]) for p, i in zip(predicted, index)]
            row.perceptual += base.perceptual(references, images).cpu().tolist()
            row.ssim += ssim(references, images).cpu().tolist()
            row.inception.append(base.features.embed(images).numpy())
            row.domain.append(judges.domain.embed(images).numpy())
            if chosen:
                kept.setdefault(name, []).append(images[chosen].cpu())
    return QualityScores(rows, base.features.embed(photos).numpy(), judges.domain.embed(photos).numpy(),
                         {name: torch.cat(parts) for name, parts in kept.items() if parts})


@dataclass(frozen=True)
class DistributionConfig:
    """FID, KID and the domain Fréchet over a subset; a subset smaller than `min_samples` gets none."""

    min_samples: int = 2
    kid: KidConfig = KidConfig(subsets=20, subset_size=500)


def distribution_metrics(scores: QualityScores, row: str, samples: np.ndarray,
                         config: DistributionConfig = DistributionConfig()) -> dict[str, float | None]:
    """FID (Inception-v3), KID (mean, std) and the Fréchet distance on C's features of one row's
    `samples` (indices) against every reference photo."""
    if len(samples) < config.min_samples:
        return {"fid": None, "kid": None, "kid_std": None, "frechet_c": None}
    inception = np.concatenate(scores.rows[row].inception)[samples]
    domain = np.concatenate(scores.rows[row].domain)[samples]
    kid, kid_std = kernel_inception_distance(inception, scores.reference_inception, config.kid)
    return {"fid": frechet_distance(inception, scores.reference_inception), "kid": kid, "kid_std": kid_std,
            "frechet_c": frechet_distance(domain, scores.reference_domain)}
