"""MoCo v2 (He et al. 2020; Chen et al. 2020) and the inference embedder C.

`MoCo` holds a query encoder (ResNet trunk + MLP head), a momentum-updated key encoder that
never receives gradients, and a queue of negative keys. `Embedder` is the query trunk alone:
the appearance vector C(x) the retrieval index searches and L_cos compares.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from generation.data import box_resize
from generation.moco.config import EmbedderConfig
from generation.moco.readout import Readout, region_descriptor


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from `num_splits` sub-batches.

    With the key batch shuffled, query and key sub-batches hold different images, so the
    network cannot cheat the pretext task through batch statistics (MoCo's ShuffleBN, in one
    process). In eval mode it is a plain BatchNorm2d with the same state dict.
    """

    def __init__(self, num_features: int, num_splits: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W]
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        batch, channels, height, width = x.shape
        if batch % self.num_splits:
            raise ValueError(f"batch {batch} is not divisible into {self.num_splits} BN splits")
        running_mean = self.running_mean.repeat(self.num_splits)
        running_var = self.running_var.repeat(self.num_splits)
        grouped = x.view(batch // self.num_splits, channels * self.num_splits, height, width)
        weight = self.weight.repeat(self.num_splits) if self.affine else None
        bias = self.bias.repeat(self.num_splits) if self.affine else None
        out = F.batch_norm(
            grouped, running_mean, running_var, weight, bias, True, self.momentum, self.eps
        ).view(batch, channels, height, width)
        with torch.no_grad():
            self.running_mean.copy_(running_mean.view(self.num_splits, channels).mean(0))
            self.running_var.copy_(running_var.view(self.num_splits, channels).mean(0))
            self.num_batches_tracked.add_(1)
        return out


class ResNetTrunk(nn.Module):
    """A torchvision ResNet (weights=None) without its classifier, exposing stage features."""

    def __init__(self, config: EmbedderConfig, norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        constructor = getattr(torchvision.models, config.backbone)
        resnet = constructor(weights=None, norm_layer=norm_layer)
        if config.stem == "cifar":
            resnet.conv1 = nn.Conv2d(3, resnet.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
            resnet.maxpool = nn.Identity()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)
        self.maxpool = resnet.maxpool
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])

    def stage_features(self, images: torch.Tensor, last_stage: int = 4) -> list[torch.Tensor]:
        """Activations after the stem and after stages 1..`last_stage` (LPIPS-style taps; later stages are not run)."""
        h = self.stem(images)  # [B, 64, H/2, W/2] (imagenet stem)
        features = [h]
        h = self.maxpool(h)
        for stage in self.stages[:last_stage]:
            h = stage(h)
            features.append(h)
        return features

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, F]
        return self.stage_features(images)[-1].mean(dim=(2, 3))


class ProjectionHead(nn.Sequential):
    """MoCo v2's 2-layer MLP head (no BN): feature -> hidden -> ReLU -> projection."""

    def __init__(self, config: EmbedderConfig) -> None:
        super().__init__(
            nn.Linear(config.feature_dim, config.projection_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(config.projection_hidden_dim, config.projection_dim),
        )


class Encoder(nn.Module):
    """Trunk + projection head; outputs L2-normalised projections [B, projection_dim]."""

    def __init__(self, config: EmbedderConfig) -> None:
        super().__init__()
        self.trunk = ResNetTrunk(config, norm_layer=partial(SplitBatchNorm, num_splits=config.bn_splits))
        self.head = ProjectionHead(config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.trunk(images)), dim=1)


def info_nce_logits(query: torch.Tensor, positive_key: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits [B, 1 + K]: column 0 the positive q.k+, then q.queue; all vectors L2-normalised.

    query, positive_key: [B, D]; queue: [K, D]. The InfoNCE loss is cross-entropy with label 0.
    """
    positive = (query * positive_key).sum(dim=1, keepdim=True)  # [B, 1]
    negative = query @ queue.t()  # [B, K]
    return torch.cat([positive, negative], dim=1) / temperature


def info_nce_loss(logits: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))


class MoCo(nn.Module):
    """Momentum contrast: query encoder, key encoder (EMA of the query encoder), key queue."""

    def __init__(self, config: EmbedderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder_q = Encoder(config)
        self.encoder_k = Encoder(config)
        self.encoder_k.load_state_dict(self.encoder_q.state_dict())
        self.encoder_k.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(config.queue_size, config.projection_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m * theta_k + (1 - m) * theta_q (parameters only; BN statistics are the key's own)."""
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.mul_(self.config.momentum).add_(param_q.detach(), alpha=1.0 - self.config.momentum)

    @torch.no_grad()
    def dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest entries with `keys` [N, D], wrapping around the end of the queue."""
        if keys.shape[0] > self.queue.shape[0]:
            raise ValueError(f"{keys.shape[0]} keys do not fit a queue of {self.queue.shape[0]}")
        slots = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % self.queue.shape[0]
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % self.queue.shape[0])

    @torch.no_grad()
    def encode_keys(self, view_k: torch.Tensor) -> torch.Tensor:
        """Keys [B, D] from the key encoder, with the batch shuffled across BN splits and restored."""
        order = torch.randperm(view_k.shape[0], device=view_k.device)
        keys = self.encoder_k(view_k[order])
        return keys[torch.argsort(order)]

    def forward(self, view_q: torch.Tensor, view_k: torch.Tensor) -> torch.Tensor:
        """Logits [B, 1 + K] for two augmented views [B, 3, R, R] of the same images.

        Updates the key encoder before computing keys, and enqueues the keys afterwards.
        Under torchrun the keys of all processes are gathered before they enter the queue.
        """
        query = self.encoder_q(view_q)  # [B, D]
        self.momentum_update()
        keys = self.encode_keys(view_k)  # [B, D]
        logits = info_nce_logits(query, keys, self.queue.clone().detach(), self.config.temperature)
        self.dequeue_and_enqueue(gather_from_all_processes(keys))
        return logits

    def embedder(self) -> "Embedder":
        """A standalone Embedder holding a copy of the query trunk (for probes and export)."""
        embedder = Embedder(self.config).to(self.queue.device)
        embedder.trunk.load_state_dict(self.encoder_q.trunk.state_dict())
        return embedder.eval()


@torch.no_grad()
def gather_from_all_processes(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor over all torchrun processes (identity when alone)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


class Embedder(nn.Module):
    """C: the MoCo query trunk without its head; images in [-1, 1] -> L2-normalised features.

    Inputs of any square size are resized to the resolution C was trained at, with the BOX filter
    its training loader used (`box_resize`), so an image of another size reaches C as the
    training files did.
    """

    def __init__(self, config: EmbedderConfig, trunk: ResNetTrunk | None = None) -> None:
        super().__init__()
        self.config = config
        self.trunk = trunk if trunk is not None else ResNetTrunk(config)

    @property
    def dim(self) -> int:
        return self.config.feature_dim

    def _to_training_resolution(self, images: torch.Tensor, side: int | None = None) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got shape {tuple(images.shape)}")
        return box_resize(images, side or self.config.resolution)

    def stage_features(self, images: torch.Tensor, last_stage: int = 4) -> list[torch.Tensor]:
        """Stem and stage (1..`last_stage`) activations of C for images [N, 3, H, W] in [-1, 1]."""
        return self.trunk.stage_features(self._to_training_resolution(images), last_stage)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, F], differentiable
        return F.normalize(self.trunk(self._to_training_resolution(images)), dim=1)

    def features_and_vector(self, images: torch.Tensor, side: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Stem and stage 1-4 activations and the vector `forward` returns, from one pass of the trunk.

        L_sim needs both of the same image; one pass instead of two halves its cost. `side`
        reads the images at another side than C's training resolution (None: that resolution).
        """
        features = self.trunk.stage_features(self._to_training_resolution(images, side))
        return features, F.normalize(features[-1].mean(dim=(2, 3)), dim=1)

    def embed(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, F] pooled vectors, float32, L2-normalised, on the CPU; batched, no autograd."""
        if len(images) == 0:
            return torch.empty(0, self.dim, dtype=torch.float32)
        return self._batched(self, images, batch_size)

    def describe(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, D] retrieval descriptors (the config's read-out), unit length, float32, CPU."""
        readout = self.config.readout
        if len(images) == 0:  # the width needs a forward pass; only an empty batch has to ask for it
            return torch.empty(0, self.stage_shapes()[readout.stage][0] * readout.grid**2, dtype=torch.float32)
        return self._batched(lambda x: region_descriptor(self.stage_features(x, readout.stage), readout), images, batch_size)

    def with_readout(self, readout: Readout) -> "Embedder":
        """This C (the same trunk module, not a copy) with another retrieval read-out."""
        return Embedder(self.config.with_readout(readout), trunk=self.trunk).train(self.training)

    def stage_shapes(self) -> dict[int, tuple[int, int, int]]:
        """Stage (1..4) -> activation shape [C, H, W] for one image at C's resolution."""
        side = self.config.resolution
        with self._evaluating():
            features = self.trunk.stage_features(torch.zeros(1, 3, side, side, device=next(self.parameters()).device))
        return {stage: tuple(features[stage].shape[1:]) for stage in range(1, len(features))}

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode without autograd for the duration; the previous mode is restored after."""
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.train(was_training)

    def _batched(self, function: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int | None) -> torch.Tensor:
        """`function` over batches of a non-empty images [N, 3, H, W] -> [N, D] float32 rows on the CPU."""
        device = next(self.parameters()).device
        batch_size = batch_size or self.config.batch_size
        with self._evaluating():
            parts = [function(images[i : i + batch_size].to(device).float()).float().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(parts, dim=0)
