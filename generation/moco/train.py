"""Training loop of C (MoCo v2): SGD with a cosine schedule, k-NN probe every epoch.

Shared plumbing (run folder, JSONL log, atomic checkpoints, RNG, DDP, progress) comes from
`generation.training`; this module holds only the MoCo step and its bookkeeping.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from generation.bundle import EMBEDDER, Bundle, save_network, update_bundle_info
from generation.configs import config_from_dict
from generation.data import ImageFolderDataset, dataset_fingerprint, native_side
from generation.moco.augment import MoCoAugment, TwoViews
from generation.moco.config import EmbedderConfig
from generation.moco.model import Embedder, MoCo, info_nce_loss
from generation.moco.readout import Readout
from generation.moco.probe import (
    ProbeSet, embedding_probe, holdout_split, load_probe_set, probe_features, raw_pixel_baselines,
)
from generation.moco.readout_choice import ReadoutChoice, choose_readout
from generation.training import (
    DistContext, JsonlLogger, RunDir, RunOptions, all_reduce_mean, any_process, budget_spent, distributed, make_progress,
    restore_run_state, save_image_grid, save_loss_curve, save_run_state, seed_everything,
)


@dataclass(frozen=True)
class EmbedderTraining:
    """What C's loop needs beyond the run options and EmbedderConfig: its probe, cadence and export record."""

    label_columns: tuple[str, ...] = ("diagnosis", "tonsil_grade")  # metadata.csv columns the probes predict
    log_every: int = 10
    checkpoint_minutes: float = 5.0
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


class MoCoRun:
    """State of one training run: model, optimiser, step counter, probe data."""

    def __init__(self, options: RunOptions, settings: EmbedderTraining, config: EmbedderConfig, ctx: DistContext) -> None:
        self.options = options
        self.settings = settings
        self.config = config
        self.ctx = ctx
        self.run = RunDir(Path(options.run_dir)).create() if ctx.is_main else RunDir(Path(options.run_dir))
        self.logger = JsonlLogger(self.run.log, enabled=ctx.is_main)
        images = ImageFolderDataset(options.data, self.config.resolution, limit=options.limit)
        self.train_indices, self.holdout_indices = holdout_split(len(images), self.config.probe_holdout_fraction, self.config.seed)
        self.dataset = TwoViews(torch.utils.data.Subset(images, self.train_indices), MoCoAugment(self.config))
        self.steps_per_epoch = len(self.dataset) // (self.config.batch_size * ctx.world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(self.dataset)} training images cannot fill one batch of {self.config.batch_size} "
                f"on {ctx.world_size} process(es)"
            )
        self.total_steps = self.steps_per_epoch * self.config.epochs
        self.model = MoCo(self.config).to(ctx.device)
        self.optimizer = torch.optim.SGD(
            self.model.encoder_q.parameters(), lr=self.config.learning_rate,
            momentum=self.config.sgd_momentum, weight_decay=self.config.weight_decay,
        )
        self.forward = self.model
        if ctx.distributed:
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
        self.step = 0
        self.probe: ProbeSet | None = None
        self.metrics: dict[str, float] = {}
        self.warm_started_from: dict[str, Any] | None = None
        self.readout_choice: ReadoutChoice | None = None  # chosen once training ends

    def serving_embedder(self) -> Embedder:
        """C as it will serve: the query trunk with the chosen read-out (the config's until one is chosen)."""
        embedder = self.model.embedder()
        return embedder if self.readout_choice is None else embedder.with_readout(self.readout_choice.readout)

    def warm_start(self, bundle_dir: Path) -> dict[str, Any]:
        """Copy a bundle's trained C into the query and key trunks; returns that C's bundle record.

        Lets C continue at another resolution or on a grown archive without repeating the
        epochs it has already learnt; the projection heads and the queue start fresh.
        """
        bundle = Bundle.open(bundle_dir)
        source = bundle.load(EMBEDDER)
        mismatched = [f for f in ("backbone", "stem") if getattr(source.config, f) != getattr(self.config, f)]
        if mismatched:
            raise ValueError(f"C in {bundle_dir} differs in {', '.join(mismatched)}; it cannot start this run's trunks")
        for encoder in (self.model.encoder_q, self.model.encoder_k):
            encoder.trunk.load_state_dict(source.trunk.state_dict())
        record = bundle.entry(EMBEDDER)
        return {"bundle": str(bundle_dir), "resolution": source.config.resolution,
                **{k: record[k] for k in ("steps", "epochs", "data_fingerprint") if k in record}}

    # -- checkpoints (every process calls these at the same step) ------------------------
    def _run_state(self) -> tuple[dict[str, torch.nn.Module], dict[str, torch.optim.Optimizer], dict[str, Any]]:
        return {"moco": self.model}, {"moco": self.optimizer}, {"embedder": self.config}

    def restore(self) -> None:
        extra = restore_run_state(self.run.checkpoint, self.ctx, *self._run_state(), self.options.seed)
        self.step = int(extra["step"])
        self.metrics = dict(extra["metrics"])
        self.warm_started_from = extra.get("warm_started_from")

    def save(self) -> None:
        save_run_state(self.run.checkpoint, self.ctx, *self._run_state(), step=self.step, metrics=self.metrics,
                       warm_started_from=self.warm_started_from)

    # -- probe ---------------------------------------------------------------------------
    def load_probe(self) -> None:
        """Read the labelled probe images once; skipped (and logged) if there is no metadata."""
        try:
            self.probe = load_probe_set(
                self.options.data, self.settings.label_columns, self.train_indices, self.holdout_indices,
                native_side(self.options.data), self.config.probe_bank_size, self.config.probe_query_size,
            )
        except (FileNotFoundError, ValueError) as error:
            self.logger.log(event="probe_disabled", reason=str(error))
            return
        baselines = raw_pixel_baselines(self.probe, self.config.knn_k, self.config.knn_temperature)
        self.metrics.update(baselines)
        self.logger.log(event="probe_baselines", classes={c: len(n) for c, n in self.probe.classes.items()},
                        bank=len(self.probe.bank_images), queries=len(self.probe.query_images), **baselines)

    def run_probe(self) -> float | None:
        """Probe the current C; returns the k-NN accuracy on the first label column."""
        if self.probe is None:
            return None
        embedder = self.serving_embedder()
        scores = embedding_probe(embedder.describe, self.probe, self.config.knn_k, self.config.knn_temperature)
        if embedder.config.readout != self.config.readout:  # the pooled vector too, for comparison
            scores.update(probe_features(embedder.embed(self.probe.bank_images), embedder.embed(self.probe.query_images),
                                         self.probe, "pooled", self.config.knn_k, self.config.knn_temperature))
        self.metrics.update(scores)
        self.logger.log(step=self.step, epoch=self.step / self.steps_per_epoch, **scores)
        return scores[f"{self.settings.label_columns[0]}/embedding_knn"]

    # -- training ------------------------------------------------------------------------
    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Two-view batches from the current step on, epoch after epoch, until total_steps."""
        while self.step < self.total_steps:
            epoch, done = divmod(self.step, self.steps_per_epoch)
            index_batches = epoch_batches(len(self.dataset), self.config.batch_size, epoch, self.options.seed, self.ctx, done)
            loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=index_batches, num_workers=self.options.workers)
            yield from loader

    def train_step(self, view_q: torch.Tensor, view_k: torch.Tensor) -> dict[str, float]:
        lr = cosine_learning_rate(self.config, self.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        logits = self.forward(view_q.to(self.ctx.device), view_k.to(self.ctx.device))  # [B, 1 + K]
        loss = info_nce_loss(logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        stats = torch.stack([loss.detach(), contrastive_accuracy(logits.detach())])
        loss_value, accuracy = all_reduce_mean(stats, self.ctx).tolist()
        return {"loss": loss_value, "contrastive_accuracy": accuracy, "lr": lr}


def train_embedder(options: RunOptions, settings: EmbedderTraining, config: EmbedderConfig) -> dict[str, Any]:
    """Train C and return its final metrics; writes checkpoints, logs and (with `options.bundle`) a bundle.

    `config.seed` draws the probe's hold-out split (recorded with C, so that its evaluation draws
    the same one); `options.seed` seeds the run's random streams.
    """
    with distributed(options.device) as ctx:
        return _train(options, settings, config, ctx)


def _train(options: RunOptions, settings: EmbedderTraining, config: EmbedderConfig, ctx: DistContext) -> dict[str, Any]:
    seed_everything(options.seed + ctx.rank)
    run = MoCoRun(options, settings, config, ctx)
    if ctx.is_main:
        run.load_probe()  # before the random streams are restored: it draws from them on a fresh run too
    if options.resume:
        run.restore()
    elif settings.warm_start is not None:
        run.warm_started_from = run.warm_start(settings.warm_start)
        run.logger.log(event="warm_start", **run.warm_started_from)
    if ctx.is_main:
        if run.step == 0:
            run.run_probe()  # epoch 0: what the randomly initialised trunk already gives
    started = time.monotonic()
    last_checkpoint = started
    stop_step = min(run.total_steps, settings.max_steps or run.total_steps)
    run.logger.log(event="start", step=run.step, total_steps=run.total_steps, stop_step=stop_step,
                   steps_per_epoch=run.steps_per_epoch, train_images=len(run.dataset), world_size=ctx.world_size)
    with make_progress(disable=not (ctx.is_main and options.progress)) as progress:
        task = progress.add_task(EMBEDDER, total=run.total_steps, completed=run.step, status="")
        for view_q, view_k in run.batches():
            if run.step == 0 and ctx.is_main:
                save_image_grid(torch.cat([view_q[:8], view_k[:8]]), run.run.samples / "views.png")
            stats = run.train_step(view_q, view_k)
            if run.step % settings.log_every == 0:
                run.logger.log(step=run.step, **stats)
            status = f"loss {stats['loss']:.3f} acc {stats['contrastive_accuracy']:.2f}"
            if run.step % run.steps_per_epoch == 0:
                knn = run.run_probe()
                status += f" knn {knn:.3f}" if knn is not None else ""
            progress.update(task, completed=run.step, status=status)
            out_of_time = budget_spent(time.monotonic() - started, options.max_minutes, ctx)
            if out_of_time or run.step >= stop_step:
                break  # the final checkpoint is written below
            overdue = time.monotonic() - last_checkpoint > settings.checkpoint_minutes * 60
            if run.step % run.steps_per_epoch == 0 or any_process(overdue, ctx):
                run.save()
                last_checkpoint = time.monotonic()
    run.save()  # before the closing probe, so that a resumed run continues the stream this one would have
    if ctx.is_main:
        if run.probe is not None:
            run.readout_choice = choose_readout(run.model.embedder(), run.probe, run.config.knn_k, run.config.knn_temperature)
            run.logger.log(event="readout_selected", **run.readout_choice.as_record())
        if run.step % run.steps_per_epoch or (run.readout_choice and run.readout_choice.readout != run.config.readout):
            run.run_probe()
        save_loss_curve(run.run.log, run.run.loss_curve, ["loss", "contrastive_accuracy", *(f"{c}/embedding_knn" for c in settings.label_columns)])
        summary = {"step": run.step, "epochs": run.step / run.steps_per_epoch, "total_steps": run.total_steps, **run.metrics}
        run.logger.log(event="end", **summary)
        if options.bundle is not None:
            export_bundle(run, options.bundle)
        return summary
    return {}


def export_bundle(run: MoCoRun, bundle_dir: Path) -> Path:
    """Save C (the query trunk) as `embedder` in the bundle, with how far it trained and its probe scores."""
    record: dict[str, Any] = {
        "steps": run.step,
        "epochs": round(run.step / run.steps_per_epoch, 3),
        "planned_steps": run.total_steps,
        "train_images": len(run.dataset),
        "data_fingerprint": dataset_fingerprint(run.options.data),
        "probe": {"label_columns": list(run.settings.label_columns), **run.metrics},
    }
    if run.warm_started_from is not None:
        record["warm_started_from"] = run.warm_started_from
    if run.readout_choice is not None:
        record["readout"] = run.readout_choice.as_record()
    if run.settings.perceptual_backbone is not None:
        record["perceptual_backbone"] = run.settings.perceptual_backbone
    embedder = run.serving_embedder()
    return save_network(bundle_dir, EMBEDDER, embedder, embedder.config, **record)



def save_readout(bundle_dir: Path, readout: Readout, record: dict[str, object]) -> None:
    """Make `readout` the retrieval read-out of the bundle's C (its config), with how it was chosen."""
    entry = Bundle.open(bundle_dir).entry(EMBEDDER)
    entry["config"] = dataclasses.asdict(config_from_dict(EmbedderConfig, entry["config"]).with_readout(readout))
    entry["readout"] = record
    update_bundle_info(bundle_dir, networks={EMBEDDER: entry})
