"""Pieces the two sketch-to-photo loops share (E and H): their options, L_sim with the bundle's C,
resumable (sketch, photo) batches, and the sample grids.

H depends on nothing of E's but the trained network it loads from the bundle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from formats.errors import InputError
from generation.bundle import EMBEDDER, Bundle
from generation.data import SketchImagePairs
from generation.sketch_augment import SketchAugmentConfig, SketchAugmenter
from generation.training import DistContext, ResumableBatchSampler, all_reduce_mean, save_image_grid


@dataclass(frozen=True)
class PairedRunOptions:
    """Where a sketch-to-photo training run reads and writes, shared by the E and H loops."""

    bundle: Path  # reads generator and embedder (and encoder for H), writes the trained network
    dataset: Path  # phantom dataset folder (images/)
    sketches: Path  # synthesized sketches of the dataset's images, same file names
    run_dir: Path
    device: str = "auto"
    resume: bool = False
    max_minutes: float | None = None  # stop early (and export) once this much wall time has passed
    val_dataset: Path | None = None  # held-out photos whose free-hand sketches measure transfer
    val_sketches: Path | None = None
    limit: int | None = None
    warm_start: Path | None = None  # a bundle whose trained network (of this loop) is the starting point
    sketch_augment: SketchAugmentConfig | None = None  # free-hand augmentation of the training sketches


def warm_start_network(options: PairedRunOptions, name: str, network: nn.Module, config: Any) -> None:
    """Start `network` from network `name` of the warm-start bundle (same config required).

    Only a fresh run loads it: a resumed run continues from its own checkpoint.
    """
    if options.warm_start is None or options.resume:
        return
    source = Bundle.open(options.warm_start)
    source.check([name])
    trained = source.load(name, "cpu")
    if dataclasses.asdict(trained.config) != dataclasses.asdict(config):
        raise InputError(f"the {name} of {options.warm_start} has another config than this run's; "
                         "warm-start needs the same preset")
    network.load_state_dict(trained.state_dict())


def run_record(options: PairedRunOptions, name: str) -> dict[str, Any]:
    """What the bundle records of a run's starting point and sketch augmentation."""
    record: dict[str, Any] = {}
    if options.warm_start is not None:
        entry = Bundle.open(options.warm_start).entry(name)
        record["warm_started_from"] = {"bundle": str(options.warm_start), "steps": entry.get("steps"),
                                       "data_fingerprint": entry.get("data_fingerprint")}
    if options.sketch_augment is not None:
        record["sketch_augment"] = dataclasses.asdict(options.sketch_augment)
    return record


def build_similarity_loss(bundle: Bundle, preset: str, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """L_sim of eq. 1 with the bundle's frozen MoCo network C; returns (loss, what the perceptual term is)."""
    from generation.losses import SimilarityConfig, SimilarityLoss, build_perceptual

    embedder = bundle.load(EMBEDDER, device)
    config = SimilarityConfig.for_preset(preset)
    loss = SimilarityLoss(config, embedder, build_perceptual(config, embedder)).to(device)
    return loss, loss.record()


def paired_loader(
    options: PairedRunOptions, resolution: int, batch_size: int, ctx: DistContext, num_workers: int, seed: int,
    start_step: int,
) -> torch.utils.data.DataLoader:
    """Shuffled (sketch, photo) batches from batch `start_step` on; each rank sees its own shard.

    Batch b is the same whether the run was resumed or not.
    """
    augment = SketchAugmenter(options.sketch_augment) if options.sketch_augment is not None else None
    pairs = SketchImagePairs(options.dataset, options.sketches, resolution, limit=options.limit,
                             sketch_transform=augment)
    if len(pairs) < batch_size * ctx.world_size:
        raise InputError(f"{len(pairs)} pairs is fewer than one batch of {batch_size} per process")
    sampler = torch.utils.data.DistributedSampler(pairs, ctx.world_size, ctx.rank, shuffle=True, seed=seed,
                                                  drop_last=True)
    return torch.utils.data.DataLoader(
        pairs, batch_sampler=ResumableBatchSampler(sampler, batch_size, start=start_step), num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched
    )


def fixed_batch(dataset: Path, sketches: Path, resolution: int, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` pairs, used for every sample grid so that grids are comparable over time."""
    pairs = SketchImagePairs(dataset, sketches, resolution, limit=count)
    sketch_batch, image_batch = zip(*(pairs[i] for i in range(len(pairs))))
    return torch.stack(sketch_batch).to(device), torch.stack(image_batch).to(device)  # [N,1,R,R], [N,3,R,R]


def comparison_grid(columns: list[torch.Tensor], path: Path) -> None:
    """One row per sample: sketch | generated ... | real (each [N, C, R, R], C = 1 or 3)."""
    rgb = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in columns]
    interleaved = torch.stack(rgb, dim=1).flatten(0, 1)  # [N * len(columns), 3, R, R]
    save_image_grid(interleaved, path, nrow=len(columns))


def scalar_record(losses: dict[str, torch.Tensor], ctx: DistContext, prefix: str = "") -> dict[str, float]:
    """Loss tensors as floats averaged over processes, for the JSONL log."""
    return {f"{prefix}{k}": float(all_reduce_mean(v.detach(), ctx)) for k, v in losses.items()}
