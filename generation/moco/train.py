"""Training loop of C (MoCo v2): SGD with a cosine schedule, k-NN probe every epoch.

The run protocol (seed, run folder, JSONL log, resume, atomic checkpoints, time budget, result)
is `LoopRun`'s; this module holds the MoCo step, its batches, the probe and the export.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from generation.bundle import EMBEDDER, Bundle, save_network, update_bundle_info
from generation.configs import Cadence, config_from_dict
from generation.data import ImageFolderDataset, dataset_fingerprint, native_side
from generation.loop_run import LoopRun, TrainResult, run_loop
from generation.moco.augment import MoCoAugment, TwoViews
from generation.moco.config import EmbedderConfig
from generation.moco.model import Embedder, MoCo, info_nce_loss
from generation.moco.readout import Readout
from generation.moco.probe import (
    ProbeSet, embedding_probe, holdout_split, load_probe_set, probe_features, raw_pixel_baselines,
)
from generation.moco.readout_choice import choose_readout
from generation.training import (
    DistContext, JsonlLogger, RunOptions, all_reduce_mean, any_process, save_image_grid, save_loss_curve,
)


@dataclass(frozen=True)
class EmbedderTraining:
    """What C's loop needs beyond the run options and EmbedderConfig: its probe, cadence and export record."""

    label_columns: tuple[str, ...] = ("diagnosis", "tonsil_grade")  # metadata.csv columns the probes predict
    cadence: Cadence = Cadence(checkpoint_minutes=5.0)  # C probes and checkpoints at each epoch's end too
    max_steps: int | None = None  # stop after this many steps in total (the schedule still spans all epochs)
    perceptual_backbone: str | None = None  # recorded in the bundle beside C
    warm_start: Path | None = None  # bundle whose C starts both trunks (heads and queue start fresh)


def cosine_learning_rate(config: EmbedderConfig, step: int, total_steps: int) -> float:
    """MoCo v2's cosine decay from the base rate to zero over the whole run."""
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def epoch_batches(count: int, batch_size: int, epoch: int, seed: int, ctx: DistContext, skip: int) -> list[list[int]]:
    """This process's shuffled full batches for `epoch`, dropping the first `skip` (resume)."""
    order = np.random.default_rng([seed, epoch]).permutation(count).tolist()
    per_process = count // ctx.world_size
    mine = order[ctx.rank * per_process : (ctx.rank + 1) * per_process]
    batches = [mine[i : i + batch_size] for i in range(0, len(mine) - batch_size + 1, batch_size)]
    return batches[skip:]


def contrastive_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Fraction of queries whose positive key outscores every queued negative."""
    return (logits.argmax(dim=1) == 0).float().mean()


@dataclass
class KnnProbe:
    """The k-NN probe of C on labelled hold-out images (main process only), and the scores it has logged."""

    probe: ProbeSet | None
    config: EmbedderConfig
    settings: EmbedderTraining
    logger: JsonlLogger
    metrics: dict[str, Any]

    @classmethod
    def load(cls, options: RunOptions, settings: EmbedderTraining, config: EmbedderConfig,
             split: tuple[list[int], list[int]], logger: JsonlLogger, ctx: DistContext) -> "KnnProbe":
        """Read the labelled probe images once (main process); none, and logged, if there is no metadata."""
        probe = cls(None, config, settings, logger, {})
        if not ctx.is_main:
            return probe
        try:
            probe.probe = load_probe_set(options.data, settings.label_columns, *split, native_side(options.data),
                                         config.probe_bank_size, config.probe_query_size)
        except (FileNotFoundError, ValueError) as error:
            logger.log(event="probe_disabled", reason=str(error))
            return probe
        baselines = raw_pixel_baselines(probe.probe, config.knn_k, config.knn_temperature)
        probe.metrics.update(baselines)
        logger.log(event="probe_baselines", classes={c: len(n) for c, n in probe.probe.classes.items()},
                   bank=len(probe.probe.bank_images), queries=len(probe.probe.query_images), **baselines)
        return probe

    def score(self, serving: Callable[[], Embedder], step: int, epoch: float) -> float | None:
        """Probe C as it would serve; returns the k-NN accuracy on the first label column.

        `serving` builds that C only when there is a probe: building one draws from the random stream."""
        if self.probe is None:
            return None
        embedder = serving()
        scores = embedding_probe(embedder.describe, self.probe, self.config.knn_k, self.config.knn_temperature)
        if embedder.config.readout != self.config.readout:  # the pooled vector too, for comparison
            scores.update(probe_features(embedder.embed(self.probe.bank_images), embedder.embed(self.probe.query_images),
                                         self.probe, "pooled", self.config.knn_k, self.config.knn_temperature))
        self.metrics.update(scores)
        self.logger.log(step=step, epoch=epoch, **scores)
        return scores[f"{self.settings.label_columns[0]}/embedding_knn"]


def warm_start_trunks(model: MoCo, config: EmbedderConfig, bundle_dir: Path) -> dict[str, Any]:
    """Copy a bundle's trained C into the query and key trunks; returns that C's bundle record.

    Lets C continue at another resolution or on a grown archive without repeating the
    epochs it has already learnt; the projection heads and the queue start fresh.
    """
    bundle = Bundle.open(bundle_dir)
    source = bundle.load(EMBEDDER)
    mismatched = [f for f in ("backbone", "stem") if getattr(source.config, f) != getattr(config, f)]
    if mismatched:
        raise ValueError(f"C in {bundle_dir} differs in {', '.join(mismatched)}; it cannot start this run's trunks")
    for encoder in (model.encoder_q, model.encoder_k):
        encoder.trunk.load_state_dict(source.trunk.state_dict())
    record = bundle.entry(EMBEDDER)
    return {"bundle": str(bundle_dir), "resolution": source.config.resolution,
            **{k: record[k] for k in ("steps", "epochs", "data_fingerprint") if k in record}}


def two_view_batches(dataset: TwoViews, config: EmbedderConfig, options: RunOptions, ctx: DistContext, start: int,
                     steps_per_epoch: int, total_steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Two-view batches from step `start` on, epoch after epoch, until `total_steps`."""
    step = start
    while step < total_steps:
        epoch, done = divmod(step, steps_per_epoch)
        index_batches = epoch_batches(len(dataset), config.batch_size, epoch, options.seed, ctx, done)
        yield from torch.utils.data.DataLoader(dataset, batch_sampler=index_batches, num_workers=options.workers)
        step += len(index_batches)


def moco_step(forward: torch.nn.Module, optimizer: torch.optim.Optimizer, config: EmbedderConfig, lr: float,
              view_q: torch.Tensor, view_k: torch.Tensor, ctx: DistContext) -> dict[str, float]:
    """One SGD step on InfoNCE between the query and key views (the key encoder follows by momentum)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = forward(view_q.to(ctx.device), view_k.to(ctx.device))  # [B, 1 + K]
    loss = info_nce_loss(logits)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    stats = torch.stack([loss.detach(), contrastive_accuracy(logits.detach())])
    loss_value, accuracy = all_reduce_mean(stats, ctx).tolist()
    return {"loss": loss_value, "contrastive_accuracy": accuracy, "lr": lr}


def train_embedder(options: RunOptions, settings: EmbedderTraining, config: EmbedderConfig) -> TrainResult:
    """Train C; writes checkpoints, logs and (with `options.bundle`) C into the bundle. Its metrics are
    the probe scores, the epochs trained and the planned steps.

    `config.seed` draws the probe's hold-out split (recorded with C, so that its evaluation draws
    the same one); `options.seed` seeds the run's random streams.
    """
    return run_loop(options, _train, settings, config)


def _train(loop: LoopRun, settings: EmbedderTraining, config: EmbedderConfig) -> TrainResult:
    options, ctx = loop.options, loop.ctx
    images = ImageFolderDataset(options.data, config.resolution, limit=options.limit)
    split = holdout_split(len(images), config.probe_holdout_fraction, config.seed)
    dataset = TwoViews(torch.utils.data.Subset(images, split[0]), MoCoAugment(config))
    steps_per_epoch = len(dataset) // (config.batch_size * ctx.world_size)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} training images cannot fill one batch of {config.batch_size} "
                         f"on {ctx.world_size} process(es)")
    total_steps = steps_per_epoch * config.epochs
    model = MoCo(config).to(ctx.device)
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), lr=config.learning_rate,
                                momentum=config.sgd_momentum, weight_decay=config.weight_decay)
    forward = model
    if ctx.distributed:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    logger = loop.open_log(None)
    probe = KnnProbe.load(options, settings, config, split, logger, ctx)  # draws from the stream: before a resume
    saved = loop.resume({"moco": model}, {"moco": optimizer}, {"embedder": config})
    step = int(saved.get("step", 0))
    probe.metrics = dict(saved.get("metrics", probe.metrics))
    warm_started_from = saved.get("warm_started_from")
    if not options.resume and settings.warm_start is not None:
        warm_started_from = warm_start_trunks(model, config, settings.warm_start)
        logger.log(event="warm_start", **warm_started_from)
    if ctx.is_main and step == 0:
        probe.score(model.embedder, step, 0.0)  # epoch 0: what the randomly initialised trunk already gives
    stop_step = min(total_steps, settings.max_steps or total_steps)
    logger.log(event="start", step=step, total_steps=total_steps, stop_step=stop_step,
               steps_per_epoch=steps_per_epoch, train_images=len(dataset), world_size=ctx.world_size)

    def save() -> None:
        loop.save(step=step, metrics=probe.metrics, warm_started_from=warm_started_from)

    last_checkpoint = time.monotonic()
    with loop.progress(EMBEDDER, total_steps, step) as progress:
        for view_q, view_k in two_view_batches(dataset, config, options, ctx, step, steps_per_epoch, total_steps):
            if step == 0 and ctx.is_main:
                save_image_grid(torch.cat([view_q[:8], view_k[:8]]), loop.dir.samples / "views.png")
            stats = moco_step(forward, optimizer, config, cosine_learning_rate(config, step, total_steps),
                              view_q, view_k, ctx)
            step += 1
            if settings.cadence.log_due(step):
                logger.log(step=step, **stats)
            status = f"loss {stats['loss']:.3f} acc {stats['contrastive_accuracy']:.2f}"
            if step % steps_per_epoch == 0 and ctx.is_main:
                knn = probe.score(model.embedder, step, step / steps_per_epoch)
                status += f" knn {knn:.3f}" if knn is not None else ""
            progress(completed=step, status=status)
            if loop.out_of_time() or step >= stop_step:
                break  # the final checkpoint is written below
            minutes = settings.cadence.checkpoint_minutes
            overdue = minutes is not None and time.monotonic() - last_checkpoint > minutes * 60
            if step % steps_per_epoch == 0 or any_process(overdue, ctx):
                save()
                last_checkpoint = time.monotonic()
    save()  # before the closing probe, so that a resumed run continues the stream this one would have
    if not ctx.is_main:
        return loop.result(step, {})
    choice = None
    if probe.probe is not None:
        choice = choose_readout(model.embedder(), probe.probe, config.knn_k, config.knn_temperature)
        logger.log(event="readout_selected", **choice.as_record())

    def serving() -> Embedder:  # built afresh for each use, as the runs before this loop drew their random streams
        return model.embedder() if choice is None else model.embedder().with_readout(choice.readout)

    if step % steps_per_epoch or (choice and choice.readout != config.readout):
        probe.score(serving, step, step / steps_per_epoch)
    save_loss_curve(loop.dir.log, loop.dir.loss_curve,
                    ["loss", "contrastive_accuracy", *(f"{c}/embedding_knn" for c in settings.label_columns)])
    summary = {"epochs": step / steps_per_epoch, "total_steps": total_steps, **probe.metrics}
    logger.log(event="end", step=step, **summary)
    if options.bundle is not None:
        export_embedder(options.bundle, serving(), {
            "steps": step, "epochs": round(step / steps_per_epoch, 3), "planned_steps": total_steps,
            "train_images": len(dataset), "data_fingerprint": dataset_fingerprint(options.data),
            "probe": {"label_columns": list(settings.label_columns), **probe.metrics},
            "warm_started_from": warm_started_from, "readout": choice.as_record() if choice else None,
            "perceptual_backbone": settings.perceptual_backbone})
    return loop.result(step, summary, bundle=options.bundle)


def export_embedder(bundle_dir: Path, embedder: Embedder, record: dict[str, Any]) -> Path:
    """Save C (the query trunk, with its chosen read-out) as `embedder` in the bundle; None entries are left out."""
    return save_network(bundle_dir, EMBEDDER, embedder, embedder.config,
                        **{k: v for k, v in record.items() if v is not None})


def save_readout(bundle_dir: Path, readout: Readout, record: dict[str, object]) -> None:
    """Make `readout` the retrieval read-out of the bundle's C (its config), with how it was chosen."""
    entry = Bundle.open(bundle_dir).entry(EMBEDDER)
    entry["config"] = dataclasses.asdict(config_from_dict(EmbedderConfig, entry["config"]).with_readout(readout))
    entry["readout"] = record
    update_bundle_info(bundle_dir, networks={EMBEDDER: entry})
