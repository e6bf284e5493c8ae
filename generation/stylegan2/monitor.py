"""Snapshot checks of a G run: FID on a fixed held-out set, and whether G draws each clinical sign.

G can reach a fair FID while never drawing the findings that decide a diagnosis (white plaques,
follicles), so each snapshot is also read sign by sign: a linear probe per sign, trained on C's
descriptors of labelled archive images, says which share of G's samples shows the sign, beside
the share it finds in held-out archive images (the same probe on real images, so the comparison
is like with like). Exudate is checked a second way, by plaque colour in the pixels, which does
not go through C.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from formats.signs import SIGNS, labels_from_row
from generation.configs import config_from_dict
from generation.files import atomic_target
from generation.data import ImageFolderDataset, dataset_fingerprint, native_side
from generation.metrics import InceptionFeatures, frechet_distance
from generation.moco.probe import read_labels
from generation.stylegan2.config import GeneratorConfig
from generation.stylegan2.evaluate import sample_images
from generation.stylegan2.networks import Generator
from generation.training import load_checkpoint

# Signs C can see (the probes separate them in the archive with AUC >= 0.99); coated tongue and
# uvula deviation are reported but are not goals of G's training.
VISIBLE_SIGNS: tuple[str, ...] = ("exudate", "erythema", "cobblestoning", "tonsils_enlarged")


@dataclass(frozen=True)
class MonitorConfig:
    """How a snapshot is measured; fixed for a run so that its curve compares like with like."""

    fid_images: int = 1000  # held-out reals and G samples for FID
    probe_images: int = 2000  # labelled archive images the sign probes learn from
    probe_holdout: float = 0.25  # share of them kept to measure the probes
    sign_samples: int = 1000  # G samples read by the probes
    probe_weight_decay: float = 1e-3
    probe_iterations: int = 200
    # plaque colour of white exudate in [0, 1] RGB: bright, and yellower than the pink mucosa is white
    plaque_min_rgb: tuple[float, float, float] = (0.7, 0.6, 0.35)
    plaque_min_red_minus_blue: float = 0.12
    plaque_min_green_minus_blue: float = 0.06
    sample_seed: int = 12345  # z for the samples; never the training seed's stream
    batch_size: int = 100


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by ranks (ties averaged): P(score of a positive > score of a negative)."""
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = scores.argsort(kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average the ranks of tied scores
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@dataclass(frozen=True)
class LinearProbe:
    """A logistic regression on standardised descriptors: positive when the logit is above zero."""

    mean: torch.Tensor  # [D]
    scale: torch.Tensor  # [D]
    weight: torch.Tensor  # [D]
    bias: torch.Tensor  # []

    def logits(self, features: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N]
        return ((features - self.mean) / self.scale) @ self.weight + self.bias

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor, weight_decay: float, iterations: int) -> "LinearProbe":
        """L2-regularised logistic regression fitted with L-BFGS (deterministic, no learning rate to tune)."""
        mean, scale = features.mean(0), features.std(0).clamp_min(1e-6)
        x = (features - mean) / scale
        y = labels.float()
        weight = torch.zeros(x.shape[1], requires_grad=True)
        bias = torch.zeros((), requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, y)
            loss = loss + weight_decay * weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(mean, scale, weight.detach(), bias.detach())


def plaque_pixels(images: torch.Tensor, config: MonitorConfig) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> [N] count of pixels of white-exudate plaque colour."""
    rgb = (images.float().clamp(-1, 1) + 1) / 2
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    low_r, low_g, low_b = config.plaque_min_rgb
    plaque = ((r > low_r) & (g > low_g) & (b > low_b) & (r - b > config.plaque_min_red_minus_blue)
              & (g - b > config.plaque_min_green_minus_blue))
    return plaque.flatten(1).sum(1)


def best_count_threshold(counts: torch.Tensor, labels: torch.Tensor) -> int:
    """The plaque-pixel count from which an image counts as exudate, by balanced accuracy on labelled images."""
    best, best_score = 1, -1.0
    for threshold in range(1, 65):
        positive = counts >= threshold
        score = (positive[labels].float().mean() + (~positive[~labels]).float().mean()).item() / 2
        if score > best_score:
            best, best_score = threshold, score
    return best


@dataclass(frozen=True)
class SignReader:
    """The per-sign probes and the exudate colour rule, with what they measure on held-out archive images."""

    probes: dict[str, LinearProbe]
    plaque_threshold: int
    reference: dict[str, Any]  # per sign: prevalence, probe AUC, probe share on held-out images; colour rule figures

    def shares(self, descriptors: torch.Tensor, images: torch.Tensor, config: MonitorConfig) -> dict[str, float]:
        """Share of images each probe calls positive, and the colour rule's exudate share."""
        shares = {sign: float((probe.logits(descriptors) > 0).float().mean()) for sign, probe in self.probes.items()}
        shares["exudate_colour"] = float((plaque_pixels(images, config) >= self.plaque_threshold).float().mean())
        return shares


def read_sign_labels(dataset: Path, count: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The first `count` images of a labelled dataset and each sign's labels ([N] bool), in file order."""
    images = ImageFolderDataset(dataset, native_side(dataset), limit=count)
    findings, grades = read_labels(dataset, "findings"), read_labels(dataset, "tonsil_grade")
    by_stem = {stem: labels_from_row({"findings": text, "tonsil_grade": grades[stem]})
               for stem, text in findings.items()}
    missing = [p.name for p in images.paths if p.stem not in by_stem]
    if missing:
        raise ValueError(f"{len(missing)} images of {dataset} have no row in its metadata.csv")
    labels = {sign: torch.tensor([by_stem[p.stem][sign] for p in images.paths]) for sign in SIGNS}
    return torch.stack([images[i] for i in range(len(images))]), labels


def fit_sign_reader(embedder: torch.nn.Module, archive: Path, config: MonitorConfig) -> SignReader:
    """Probes on C's descriptors of the archive's first `probe_images` images (a seeded split measures them)."""
    images, labels = read_sign_labels(archive, config.probe_images)
    descriptors = embedder.describe(images)  # [N, D]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    held = int(len(images) * config.probe_holdout)
    test, train = order[:held], order[held:]
    probes, reference = {}, {}
    for sign in SIGNS:
        y = labels[sign]
        if y[train].all() or not y[train].any():
            continue  # a sign the archive never (or always) shows cannot be probed
        probe = LinearProbe.fit(descriptors[train], y[train], config.probe_weight_decay, config.probe_iterations)
        scores = probe.logits(descriptors[test])
        probes[sign] = probe
        reference[sign] = {"prevalence": float(y.float().mean()), "probe_auc": auc(scores.numpy(), y[test].numpy()),
                           "probe_share_heldout": float((scores > 0).float().mean())}
    counts = plaque_pixels(images, config)
    threshold = best_count_threshold(counts[train], labels["exudate"][train])
    flagged = counts[test] >= threshold
    truth = labels["exudate"][test]
    reference["exudate_colour"] = {
        "threshold_pixels": threshold, "sensitivity": float(flagged[truth].float().mean()),
        "specificity": float((~flagged[~truth]).float().mean()), "share_heldout": float(flagged.float().mean()),
        "prevalence": float(labels["exudate"].float().mean()),
    }
    return SignReader(probes, threshold, reference)


def generator_from_checkpoint(checkpoint: Path) -> tuple[Generator, dict[str, Any]]:
    """G_ema of a G run's checkpoint (built from the config stored in it) and the run's state values."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}: give a G run folder or a model bundle")
    try:
        state = load_checkpoint(checkpoint)
    except (RuntimeError, ValueError, EOFError, IndexError, pickle.UnpicklingError):
        raise ValueError(f"{checkpoint} is not a readable checkpoint (corrupt or cut short)") from None
    try:
        config = config_from_dict(GeneratorConfig, state["configs"]["generator"])
        generator = Generator(config)
        generator.load_state_dict(state["modules"]["G_ema"])
    except (KeyError, TypeError, RuntimeError):
        raise ValueError(f"{checkpoint} is not the checkpoint of a G run") from None
    return generator.eval(), state.get("state", {})


@dataclass
class SnapshotMonitor:
    """Measures snapshots of one G run against fixed references (held-out reals, archive probes)."""

    config: MonitorConfig
    inception: InceptionFeatures
    real_features: np.ndarray  # [N, 2048] Inception features of the held-out reals
    signs: SignReader
    embedder: torch.nn.Module
    heldout_fingerprint: str

    @classmethod
    def build(cls, embedder: torch.nn.Module, heldout: Path, archive: Path, config: MonitorConfig,
              cache: Path | None = None) -> "SnapshotMonitor":
        """The references of a run: Inception features of the held-out reals and the sign probes.

        They take minutes on a CPU and stay fixed for a run, so they are kept in `cache` and rebuilt
        only when the held-out set, the archive, C or the config differ from the cached ones.
        """
        key = {"heldout": dataset_fingerprint(heldout), "archive": dataset_fingerprint(archive),
               "embedder": _module_digest(embedder), "config": asdict(config)}
        inception = InceptionFeatures(batch_size=config.batch_size)
        if cache is not None and cache.is_file():
            stored = torch.load(cache, weights_only=True)
            if stored["key"] == key:
                probes = {sign: LinearProbe(**tensors) for sign, tensors in stored["probes"].items()}
                signs = SignReader(probes, stored["plaque_threshold"], stored["reference"])
                return cls(config, inception, stored["real_features"].numpy(), signs, embedder, key["heldout"])
        reals = ImageFolderDataset(heldout, native_side(heldout), limit=config.fid_images)
        if len(reals) < config.fid_images:
            raise ValueError(f"{heldout} has {len(reals)} images; the FID needs {config.fid_images}")
        real_features = inception.embed(torch.stack([reals[i] for i in range(len(reals))]))
        signs = fit_sign_reader(embedder, archive, config)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_target(cache) as tmp:
                torch.save({"key": key, "real_features": real_features, "plaque_threshold": signs.plaque_threshold,
                            "reference": signs.reference,
                            "probes": {sign: asdict(probe) for sign, probe in signs.probes.items()}}, tmp)
        return cls(config, inception, real_features.numpy(), signs, embedder, key["heldout"])

    @torch.no_grad()
    def measure(self, generator: Generator) -> dict[str, Any]:
        """FID at G's resolution and each sign's share in G's samples (at truncation 1: G's own distribution)."""
        count = max(self.config.fid_images, self.config.sign_samples)
        samples = sample_images(generator, count, self.config.sample_seed, batch_size=self.config.batch_size)
        fid = frechet_distance(self.inception.embed(samples[:self.config.fid_images]).numpy(), self.real_features)
        signed = samples[:self.config.sign_samples]
        shares = self.signs.shares(self.embedder.describe(signed), signed, self.config)
        return {"fid": fid, "fid_images": self.config.fid_images, "heldout_fingerprint": self.heldout_fingerprint,
                "sign_shares": shares, "config": asdict(self.config)}


def _module_digest(module: torch.nn.Module) -> str:
    """A short hash of a network's weights: cached references are only valid for the same C."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def sign_ratios(shares: dict[str, float], reference: dict[str, Any]) -> dict[str, float]:
    """G's share of each visible sign (and of exudate by colour) over the share the same reader finds
    in held-out archive images: 1 = as often as the archive shows it."""
    expected = {sign: reference.get(sign, {}).get("probe_share_heldout") for sign in VISIBLE_SIGNS}
    expected["exudate_colour"] = reference.get("exudate_colour", {}).get("share_heldout")
    return {sign: shares.get(sign, 0.0) / share for sign, share in expected.items() if share}
