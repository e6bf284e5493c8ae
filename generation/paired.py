"""Pieces the sketch-to-photo loops share (E, H, pix2pix): their paired inputs, L_sim with the bundle's C,
resumable (sketch, photo) batches, and the sample grids.

H depends on nothing of E's but the trained network it loads from the bundle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import nn

from formats.errors import InputError
from generation.bundle import EMBEDDER, Bundle
from generation.data import SketchImagePairs
from generation.sketch_augment import SketchAugmentConfig, SketchAugmenter
from generation.training import DistContext, ResumableBatchSampler, RunOptions, all_reduce_mean, save_image_grid

if TYPE_CHECKING:
    from generation.losses import SimilarityConfig, SimilarityLoss


@dataclass(frozen=True)
class PairedInputs:
    """What a sketch-to-photo run adds to its `RunOptions`: the sketches paired with `RunOptions.data`'s
    photos, validation pairs, a warm start and the sketches' augmentation."""

    sketches: Path  # synthesized sketches of the dataset's images, same file names
    val_data: Path | None = None  # held-out photos whose free-hand sketches measure transfer
    val_sketches: Path | None = None
    warm_start: Path | None = None  # a bundle whose trained network (of this loop) is the starting point
    sketch_augment: SketchAugmentConfig | None = None  # free-hand augmentation of the training sketches

    def validation(self) -> tuple[Path, Path] | None:
        """(photos, sketches) of the validation pairs, or None when the run has none."""
        if self.val_data is None or self.val_sketches is None:
            return None
        return self.val_data, self.val_sketches


def warm_start_network(options: RunOptions, paired: PairedInputs, name: str, network: nn.Module, config: Any) -> None:
    """Start `network` from network `name` of the warm-start bundle (same config required).

    Only a fresh run loads it: a resumed run continues from its own checkpoint.
    """
    if paired.warm_start is None or options.resume:
        return
    source = Bundle.open(paired.warm_start)
    source.check([name])
    trained = source.load(name, "cpu")
    if dataclasses.asdict(trained.config) != dataclasses.asdict(config):
        raise InputError(f"the {name} of {paired.warm_start} has another config than this run's; "
                         "warm-start needs the same preset")
    network.load_state_dict(trained.state_dict())


def run_record(paired: PairedInputs, name: str) -> dict[str, Any]:
    """What the bundle records of a run's starting point and sketch augmentation."""
    record: dict[str, Any] = {}
    if paired.warm_start is not None:
        entry = Bundle.open(paired.warm_start).entry(name)
        record["warm_started_from"] = {"bundle": str(paired.warm_start), "steps": entry.get("steps"),
                                       "data_fingerprint": entry.get("data_fingerprint")}
    if paired.sketch_augment is not None:
        record["sketch_augment"] = dataclasses.asdict(paired.sketch_augment)
    return record


def build_similarity_loss(bundle: Bundle, config: SimilarityConfig, device: torch.device) -> tuple[SimilarityLoss, dict[str, Any]]:
    """L_sim of eq. 1 with the bundle's frozen MoCo network C; returns (loss, what the perceptual term is)."""
    from generation.losses import SimilarityLoss, build_perceptual

    embedder = bundle.load(EMBEDDER, device)
    loss = SimilarityLoss(config, embedder, build_perceptual(config, embedder)).to(device)
    return loss, loss.record()


def paired_loader(
    options: RunOptions, paired: PairedInputs, resolution: int, batch_size: int, ctx: DistContext, start_step: int,
) -> torch.utils.data.DataLoader:
    """Shuffled (sketch, photo) batches from batch `start_step` on; each rank sees its own shard.

    Batch b is the same whether the run was resumed or not.
    """
    augment = SketchAugmenter(paired.sketch_augment) if paired.sketch_augment is not None else None
    pairs = SketchImagePairs(options.data, paired.sketches, resolution, limit=options.limit, sketch_transform=augment)
    if len(pairs) < batch_size * ctx.world_size:
        raise InputError(f"{len(pairs)} pairs is fewer than one batch of {batch_size} per process")
    sampler = torch.utils.data.DistributedSampler(pairs, ctx.world_size, ctx.rank, shuffle=True, seed=options.seed,
                                                  drop_last=True)
    return torch.utils.data.DataLoader(
        pairs, batch_sampler=ResumableBatchSampler(sampler, batch_size, start=start_step), num_workers=options.workers,
        generator=torch.Generator().manual_seed(options.seed),  # keeps the global RNG untouched
    )


def fixed_batch(dataset: Path, sketches: Path, resolution: int, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` pairs, used for every sample grid so that grids are comparable over time."""
    pairs = SketchImagePairs(dataset, sketches, resolution, limit=count)
    sketch_batch, image_batch = zip(*(pairs[i] for i in range(len(pairs))))
    return torch.stack(sketch_batch).to(device), torch.stack(image_batch).to(device)  # [N,1,R,R], [N,3,R,R]


@dataclass
class PairedBatches:
    """A paired loop's data: its training batches from a step on, the fixed batch every sample grid
    shows (comparable over time) and the fixed free-hand validation batch (None without one)."""

    loader: torch.utils.data.DataLoader
    samples: tuple[torch.Tensor, torch.Tensor]  # sketches [N,1,R,R], photos [N,3,R,R]
    validation: tuple[torch.Tensor, torch.Tensor] | None
    _batches: Iterator[Any]

    @classmethod
    def open(cls, options: RunOptions, paired: PairedInputs, resolution: int, batch_size: int, sample_count: int,
             ctx: DistContext, start_step: int) -> "PairedBatches":
        loader = paired_loader(options, paired, resolution, batch_size, ctx, start_step)
        batches = iter(loader)
        samples = fixed_batch(options.data, paired.sketches, resolution, sample_count, ctx.device)
        validation = paired.validation()
        val_batch = None if validation is None else fixed_batch(*validation, resolution, sample_count, ctx.device)
        return cls(loader, samples, val_batch, batches)

    def next(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training batch on `device`: sketches [B,1,R,R], photos [B,3,R,R]."""
        sketches, images = next(self._batches)
        return sketches.to(device, non_blocking=True), images.to(device, non_blocking=True)


def comparison_grid(columns: list[torch.Tensor], path: Path) -> None:
    """One row per sample: sketch | generated ... | real (each [N, C, R, R], C = 1 or 3)."""
    rgb = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in columns]
    interleaved = torch.stack(rgb, dim=1).flatten(0, 1)  # [N * len(columns), 3, R, R]
    save_image_grid(interleaved, path, nrow=len(columns))


def scalar_record(losses: dict[str, torch.Tensor], ctx: DistContext, prefix: str = "") -> dict[str, float]:
    """Loss tensors as floats averaged over processes, for the JSONL log."""
    return {f"{prefix}{k}": float(all_reduce_mean(v.detach(), ctx)) for k, v in losses.items()}
