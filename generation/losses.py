"""The similarity loss L_sim of Sketch2MedI (paper eq. 1-2) and the perceptual distances it uses.

    L_sim = l2 * L2(x, x_hat) + lpips * LPIPS(x, x_hat) + cos * (1 - cos(C(x), C(x_hat)))

Default weights are e4e/HyperStyle's for non-face domains: L2 1.0, LPIPS 0.8, MoCo similarity
0.5 (README recipe; the code default is 0.1).

The perceptual term is one of, chosen explicitly in `SimilarityConfig.perceptual_backbone`:
- "alex-imagenet" / "vgg-imagenet": the standard LPIPS (lpips 0.1.4, v0.1 linear layers). Its
  ImageNet trunk is read from the torchvision checkpoint the user placed at
  `$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth` (VGG: `vgg16-397923af.pth`; TORCH_HOME
  defaults to ~/.cache/torch). Nothing is ever downloaded: a missing file is an error.
- "embedder-substitute": a distance of the LPIPS form over the domain-trained C's stage
  features (channel-unit-normalised, squared difference, spatial mean, equal stage weights).
  It is a substitute, not LPIPS, and every record says so.
- "random-plumbing": LPIPS with a random trunk; only for plumbing tests, never a metric.

With the substitute, C runs once per image for both C terms, and the real images' features are
computed once per batch without autograd (`SimilarityLoss.target`), which H's T refinement steps
share: the same loss as running C four times per call, at a third to a half of the cost.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from generation.moco import Embedder
from generation.presets import check_preset

PERCEPTUAL_BACKBONES = ("alex-imagenet", "vgg-imagenet", "embedder-substitute", "random-plumbing")

# lpips trunk name and the torchvision ImageNet checkpoint file it needs, per backbone.
IMAGENET_TRUNKS: dict[str, tuple[str, str]] = {
    "alex-imagenet": ("alex", "alexnet-owt-7be5be79.pth"),
    "vgg-imagenet": ("vgg", "vgg16-397923af.pth"),
}
TORCHVISION_CONSTRUCTORS = {"alex": "alexnet", "vgg": "vgg16"}

# e4e / HyperStyle non-face weights (reference notes, stylegan2-e4e-hyperstyle section 4).
E4E_L2_WEIGHT = 1.0
E4E_LPIPS_WEIGHT = 0.8
E4E_MOCO_WEIGHT = 0.5

# C's ResNet trunk needs 16 px at least (EmbedderConfig's own limit); above 1024 px is surely a typo.
MIN_EMBEDDER_SIDE, MAX_EMBEDDER_SIDE = 16, 1024

# Which perceptual distance each preset uses unless told otherwise: tiny runs in unit tests
# without trained networks; small and paper use what exists offline or fail loudly.
PRESET_PERCEPTUAL_BACKBONE = {"tiny": "random-plumbing", "small": "embedder-substitute", "paper": "alex-imagenet"}


@dataclass(frozen=True)
class SimilarityConfig:
    """Weights of L_sim's three terms and the perceptual distance behind its LPIPS term."""

    l2: float = E4E_L2_WEIGHT
    lpips: float = E4E_LPIPS_WEIGHT
    cos: float = E4E_MOCO_WEIGHT
    perceptual_backbone: str = "embedder-substitute"
    # The side C reads both images at for its terms; None: the side C was trained at (the shipped C:
    # 96 px, box-upsampled from G's 64). A smaller side is cheaper but another loss (docs/benchmarks.md).
    embedder_side: int | None = None

    def __post_init__(self) -> None:
        if self.perceptual_backbone not in PERCEPTUAL_BACKBONES:
            raise ValueError(f"unknown perceptual_backbone {self.perceptual_backbone!r}; choose one of {PERCEPTUAL_BACKBONES}")
        if self.embedder_side is not None and not MIN_EMBEDDER_SIDE <= self.embedder_side <= MAX_EMBEDDER_SIDE:
            raise ValueError(f"the side C reads L_sim's images at (--embedder-side) must be {MIN_EMBEDDER_SIDE} to "
                             f"{MAX_EMBEDDER_SIDE} px, or unset for the side C was trained at; got {self.embedder_side}")
        for name in ("l2", "lpips", "cos"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def for_preset(cls, name: str) -> "SimilarityConfig":
        return cls(perceptual_backbone=PRESET_PERCEPTUAL_BACKBONE[check_preset(name)])


def imagenet_checkpoint_path(backbone: str) -> Path:
    """Where the torchvision ImageNet checkpoint for an "*-imagenet" backbone must be put."""
    if backbone not in IMAGENET_TRUNKS:
        raise ValueError(f"{backbone!r} uses no ImageNet checkpoint")
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_TRUNKS[backbone][1]


class PerceptualDistance(nn.Module):
    """A frozen perceptual distance: forward(x, y) [B, 3, H, W] in [-1, 1] -> [B] distances."""

    backbone: str
    is_lpips: bool

    def record(self) -> dict[str, Any]:
        """What bundles and evaluation reports write about this distance."""
        return {"perceptual_backbone": self.backbone, "is_lpips": self.is_lpips, "description": self.description()}

    def description(self) -> str:
        return self.backbone


class LpipsDistance(PerceptualDistance):
    """The lpips package's LPIPS with the trunk chosen by the backbone (ImageNet or random)."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        import lpips

        self.backbone = backbone
        self.is_lpips = backbone != "random-plumbing"
        net = IMAGENET_TRUNKS[backbone][0] if self.is_lpips else "alex"
        checkpoint = imagenet_checkpoint_path(backbone) if self.is_lpips else None
        if checkpoint is not None and not checkpoint.is_file():
            raise FileNotFoundError(
                f"perceptual_backbone {backbone!r} needs the torchvision ImageNet checkpoint at {checkpoint} "
                f"(set TORCH_HOME to move it); nothing is downloaded. Use 'embedder-substitute' without it."
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            # pnet_rand=True: lpips builds its trunk with random weights and never tries the network.
            self.lpips = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        if checkpoint is not None:
            load_imagenet_trunk(self.lpips, net, checkpoint)
        self.requires_grad_(False).eval()

    def description(self) -> str:
        if self.is_lpips:
            return f"LPIPS v0.1 ({IMAGENET_TRUNKS[self.backbone][0]}, ImageNet trunk from {IMAGENET_TRUNKS[self.backbone][1]})"
        return "LPIPS form with a RANDOM trunk: plumbing only, not a perceptual metric"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] x2 -> [B]
        return self.lpips(x, y).flatten()


def load_imagenet_trunk(model: nn.Module, net: str, checkpoint: Path) -> None:
    """Copy a torchvision ImageNet state dict (read with weights_only) into lpips's trunk slices."""
    import torchvision

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    reference = getattr(torchvision.models, TORCHVISION_CONSTRUCTORS[net])(weights=None)
    try:
        reference.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{checkpoint} is not a torchvision {TORCHVISION_CONSTRUCTORS[net]} checkpoint: {error}") from error
    trunk = model.net
    for slice_index in range(1, trunk.N_slices + 1):
        for name, layer in getattr(trunk, f"slice{slice_index}").named_children():
            layer.load_state_dict(reference.features[int(name)].state_dict())


class EmbedderFeatureDistance(PerceptualDistance):
    """LPIPS-form distance over C's stem and stage features (a substitute, not LPIPS)."""

    backbone = "embedder-substitute"
    is_lpips = False

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.embedder = embedder.requires_grad_(False).eval()

    def description(self) -> str:
        return "LPIPS-form substitute over the domain-trained MoCo embedder C's features (not LPIPS)"

    def train(self, mode: bool = True) -> "EmbedderFeatureDistance":
        super().train(mode)
        self.embedder.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] x2 -> [B]
        return feature_distance(self.embedder.stage_features(x), self.embedder.stage_features(y))


def feature_distance(x_features: list[torch.Tensor], y_features: list[torch.Tensor]) -> torch.Tensor:
    """The substitute's distance between two images' C activations (lists of [B, C, h, w]) -> [B]."""
    distance = x_features[0].new_zeros(x_features[0].shape[0])
    for fx, fy in zip(x_features, y_features):
        diff = F.normalize(fx, dim=1, eps=1e-10) - F.normalize(fy, dim=1, eps=1e-10)  # [B, C, h, w]
        distance = distance + diff.pow(2).sum(dim=1).mean(dim=(1, 2))
    return distance


def build_perceptual(config: SimilarityConfig, embedder: Embedder | None) -> PerceptualDistance:
    """The perceptual distance the config names; never downloads, never falls back silently."""
    if config.perceptual_backbone == "embedder-substitute":
        if embedder is None:
            raise ValueError("perceptual_backbone 'embedder-substitute' needs the trained embedder C")
        return EmbedderFeatureDistance(embedder)
    return LpipsDistance(config.perceptual_backbone)


@dataclass(frozen=True)
class SimilarityTarget:
    """The real images of one batch as L_sim compares against them: C's activations and vector
    (None where the config needs none), computed once without autograd."""

    images: torch.Tensor  # [B, 3, H, W] in [-1, 1]
    features: list[torch.Tensor] | None  # C's stem and stage activations (the substitute's term)
    vector: torch.Tensor | None  # C(x) [B, F] (the cosine term)


class SimilarityLoss(nn.Module):
    """L_sim(x, x_hat) with C and the perceptual trunk frozen; differentiable in x_hat.

    Returns scalars (means over the batch): "l2", "lpips", "cos" and their weighted "total".
    `target(x)` prepares the real images once; `compare(target, x_hat)` is then L_sim against them
    (what `forward` does in one call), so that a loop scoring several x_hat of one batch reads x once.
    """

    def __init__(self, config: SimilarityConfig, embedder: Embedder | None, perceptual: PerceptualDistance) -> None:
        super().__init__()
        if config.cos > 0 and embedder is None:
            raise ValueError("the cosine term (cos > 0) needs the embedder C")
        if perceptual.backbone != config.perceptual_backbone:
            raise ValueError(f"perceptual distance is {perceptual.backbone!r} but the config asks for {config.perceptual_backbone!r}")
        self.config = config
        self.embedder = embedder.requires_grad_(False).eval() if embedder is not None else None
        self.perceptual = perceptual.requires_grad_(False).eval()
        # The substitute over this same C: one pass of C gives both of its terms.
        self._shared_pass = isinstance(perceptual, EmbedderFeatureDistance) and perceptual.embedder is self.embedder

    def train(self, mode: bool = True) -> "SimilarityLoss":
        """Frozen networks stay in eval mode whatever the surrounding module does."""
        self.training = mode
        return self

    def record(self) -> dict[str, Any]:
        record = {"l2": self.config.l2, "lpips": self.config.lpips, "cos": self.config.cos, **self.perceptual.record()}
        if self.config.embedder_side is not None:
            record["embedder_side"] = self.config.embedder_side
        return record

    def _c_pass(self, images: torch.Tensor) -> tuple[list[torch.Tensor] | None, torch.Tensor | None]:
        """C's activations (for the substitute) and vector of `images`, from one pass where both are needed."""
        if self.embedder is None:
            return None, None
        if self._shared_pass:
            return self.embedder.features_and_vector(images, self.config.embedder_side)
        return None, self.embedder.features_and_vector(images, self.config.embedder_side)[1]

    def target(self, x: torch.Tensor) -> SimilarityTarget:
        """Real images [B, 3, H, W] in [-1, 1], prepared for `compare` (no autograd unless x needs it)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            features, vector = self._c_pass(x)
        return SimilarityTarget(images=x, features=features, vector=vector)

    def compare(self, target: SimilarityTarget, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_sim between the prepared real images and x_hat [B, 3, H, W] (generated, in [-1, 1])."""
        x = target.images
        if x.shape != x_hat.shape:
            raise ValueError(f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} must have the same shape")
        features, vector = self._c_pass(x_hat)
        if self._shared_pass:
            perceptual = feature_distance(target.features, features)
        else:
            perceptual = self.perceptual(x, x_hat)
        terms = {"l2": F.mse_loss(x_hat, x), "lpips": perceptual.mean()}
        if vector is not None:
            terms["cos"] = (1.0 - (target.vector * vector).sum(dim=1)).mean()
        else:
            terms["cos"] = x_hat.new_zeros(())
        terms["total"] = self.config.l2 * terms["l2"] + self.config.lpips * terms["lpips"] + self.config.cos * terms["cos"]
        return terms

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: real images [B, 3, H, W], x_hat: generated [B, 3, H, W], both in [-1, 1]."""
        return self.compare(self.target(x), x_hat)
