"""`s2m train signs`: learn each clinical sign's direction in G's W and in C's space from a labelled archive.

Labelled archive images only (their findings and tonsil grade, `formats.signs`); the ways are the
established ones (InterFaceGAN): a linear probe per sign on C's descriptors of the archive (the
monitor's `LinearProbe`), then w sampled from the mapping network, G(w) labelled by those probes,
a linear boundary per sign fitted in W, and the normals made mutually orthogonal (symmetric
orthogonalisation: no sign is privileged by its order), so that one sign's edit moves the other
signs' boundaries as little as W allows (conditional manipulation). In C's space a sign's direction
is the normalised difference of the class means of the archive descriptors. Every figure recorded
is measured on data the fit did not see: held-out archive images for the probes, fresh w for the
W edits. Minutes on a CPU at the shipped size, so it is not resumable; it prints its progress.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from generation.bundle import EMBEDDER, GENERATOR, Bundle
from generation.data import dataset_fingerprint
from generation.signs import ROUTES, SignDirections
from generation.stylegan2.monitor import LinearProbe, auc, read_sign_labels

Progress = Callable[[str], None]
MIN_CLASS = 5  # fewer samples than this on either side of a sign leave it without a direction


@dataclass(frozen=True)
class SignTrainConfig:
    """What `s2m train signs` reads and how it fits; recorded in the bundle beside the directions."""

    probe_images: int = 2000  # labelled archive images (the first ones, in file order)
    probe_holdout: float = 0.25  # share of them kept to measure the probes and the appearance directions
    probe_weight_decay: float = 1e-3
    probe_iterations: int = 200
    w_samples: int = 2000  # w from the mapping network, labelled by the probes through G and C
    check_samples: int = 64  # fresh w the W edits are measured on
    check_strengths: int = 7  # strengths 0 .. 1 the monotonicity is read at
    w_step_sd: float = 3.0  # strength 1 moves this many standard deviations of the samples' projection
    appearance_weight: float = 1.0  # the appearance channel's weight in sign queries
    seed: int = 0
    batch_size: int = 100


def train_signs(bundle: Bundle, archive: Path, config: SignTrainConfig, progress: Progress = lambda _: None) -> SignDirections:
    """The sign directions of `bundle`'s G and C learned from `archive`; nothing is written (see `save`)."""
    bundle.check([GENERATOR, EMBEDDER])
    generator, embedder = bundle.load(GENERATOR), bundle.load_embedder()
    progress(f"reading and describing up to {config.probe_images} labelled archive images")
    images, labels = read_sign_labels(archive, config.probe_images)
    descriptors = embedder.describe(images, config.batch_size)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(config.seed))
    held = int(len(images) * config.probe_holdout)
    test, train = order[:held], order[held:]
    probes: dict[str, LinearProbe] = {}
    quality: dict[str, dict[str, Any]] = {}
    appearance: dict[str, torch.Tensor] = {}
    appearance_steps: dict[str, float] = {}
    for sign, y in labels.items():
        if min(int(y[train].sum()), int((~y[train]).sum())) < MIN_CLASS:
            quality[sign] = {"skipped": "too few archive images with and without it"}
            continue
        probe = LinearProbe.fit(descriptors[train], y[train], config.probe_weight_decay, config.probe_iterations)
        probes[sign] = probe
        gap = descriptors[train][y[train]].mean(0) - descriptors[train][~y[train]].mean(0)
        appearance[sign], appearance_steps[sign] = gap / gap.norm().clamp_min(1e-12), float(gap.norm())
        quality[sign] = {"prevalence": float(y.float().mean()),
                         "probe_auc": auc(probe.logits(descriptors[test]).numpy(), y[test].numpy()),
                         "appearance_auc": auc((descriptors[test] @ appearance[sign]).numpy(), y[test].numpy())}
        progress(f"  {sign}: probe AUC {quality[sign]['probe_auc']:.3f} on {held} held-out images")
    names = tuple(probes)
    if not names:
        raise ValueError(f"no sign has {MIN_CLASS} archive images with it and without it in {archive}")
    progress(f"sampling {config.w_samples} w and labelling G(w) with the probes")
    w = sample_w(generator, config.w_samples, config.seed + 1)
    scores = probe_scores(generator, embedder, w, probes, config.batch_size)
    normals, labelling = {}, {}
    for sign in names:
        normals[sign], labelling[sign] = boundary_normal(w, scores[sign], config)
    w_directions = orthonormalise(torch.stack([normals[sign] for sign in names]))
    w_steps = tuple(config.w_step_sd * float((w @ direction).std()) for direction in w_directions)
    progress(f"measuring the W edits on {config.check_samples} fresh w")
    fresh = sample_w(generator, config.check_samples, config.seed + 2)
    for row, sign in enumerate(names):
        quality[sign].update(labelling[sign], cosine_before_orthogonalising=float(normals[sign] @ w_directions[row]),
                             **edit_quality(generator, embedder, probes, fresh, sign, w_directions[row] * w_steps[row], config))
        progress(f"  {sign}: probe score along W, Spearman {quality[sign]['w_spearman']:.2f}")
    record = {"data_fingerprint": dataset_fingerprint(archive), "archive_images": len(images),
              "learned_with": {GENERATOR: bundle.digest(GENERATOR), EMBEDDER: bundle.digest(EMBEDDER)},
              "config": asdict(config), "quality": quality}
    return SignDirections(names, w_directions, torch.stack([appearance[sign] for sign in names]), w_steps,
                          tuple(appearance_steps[sign] for sign in names), config.appearance_weight, ROUTES, record)


@torch.no_grad()
def sample_w(generator: torch.nn.Module, count: int, seed: int) -> torch.Tensor:
    """[count, w_dim] w = mapping(z), z from its own seeded stream (truncation 1: G's own distribution)."""
    z = torch.randn(count, generator.config.z_dim, generator=torch.Generator().manual_seed(seed))
    return generator.mapping(z)


@torch.no_grad()
def probe_scores(generator: torch.nn.Module, embedder: torch.nn.Module, w: torch.Tensor, probes: dict[str, LinearProbe],
                 batch_size: int) -> dict[str, torch.Tensor]:
    """Each probe's logit [N] on C's descriptors of G(w) (constant noise, as the pipeline draws)."""
    descriptors = torch.cat([embedder.describe(generator.synthesis(w[i:i + batch_size], noise_mode="const"))
                             for i in range(0, len(w), batch_size)])
    return {sign: probe.logits(descriptors) for sign, probe in probes.items()}


def boundary_normal(w: torch.Tensor, scores: torch.Tensor, config: SignTrainConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """The unit normal [w_dim] of a linear boundary in W between G's samples with and without the sign.

    A sample has the sign when its probe says so; when G draws a sign too rarely (or too often) for
    that to leave both sides `MIN_CLASS` samples, the split is at the median score instead ("more of
    the sign than half of G's samples"), which the record says."""
    positive = scores > 0
    share = float(positive.float().mean())
    split = "probe"
    if min(int(positive.sum()), int((~positive).sum())) < MIN_CLASS:
        positive, split = scores > scores.median(), "median"
    boundary = LinearProbe.fit(w, positive, config.probe_weight_decay, config.probe_iterations)
    normal = boundary.weight / boundary.scale  # the logit's gradient in W's own coordinates
    return normal / normal.norm().clamp_min(1e-12), {"share_of_g_samples": share, "w_labels": split}


def orthonormalise(directions: torch.Tensor) -> torch.Tensor:
    """The orthonormal rows [S, D] closest to `directions` (Löwdin: U V^T of their SVD), order-free."""
    u, _, vt = torch.linalg.svd(directions.double(), full_matrices=False)
    return (u @ vt).float()


@torch.no_grad()
def edit_quality(generator: torch.nn.Module, embedder: torch.nn.Module, probes: dict[str, LinearProbe], w: torch.Tensor,
                 sign: str, step: torch.Tensor, config: SignTrainConfig) -> dict[str, Any]:
    """How the probes read G(w + s * step) for s in 0 .. 1: the edited sign's mean score should rise
    monotonically (Spearman of mean score against strength), the other signs' should move less."""
    strengths = np.linspace(0.0, 1.0, config.check_strengths)
    means = {name: [] for name in probes}
    for strength in strengths:
        scores = probe_scores(generator, embedder, w + float(strength) * step, probes, config.batch_size)
        for name, values in scores.items():
            means[name].append(float(values.mean()))
    rise = means[sign][-1] - means[sign][0]
    others = {name: abs(values[-1] - values[0]) for name, values in means.items() if name != sign}
    return {"w_spearman": spearman(strengths, np.array(means[sign])), "w_score_rise": rise,
            "w_score_by_strength": [round(value, 4) for value in means[sign]],
            "w_largest_other_shift": max(others.values(), default=0.0)}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (no ties expected in a mean score along a strength ramp)."""
    rank_x, rank_y = x.argsort().argsort().astype(float), y.argsort().argsort().astype(float)
    if rank_y.std() == 0:
        return 0.0
    return float(np.corrcoef(rank_x, rank_y)[0, 1])
