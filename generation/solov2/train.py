"""Training loop of S: SOLOv2 on a COCO-annotated folder, validated by per-class DICE each epoch."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generation.bundle import SYNTHESIZER, save_network
from generation.data import dataset_fingerprint, image_to_tensor
from generation.loop_run import LoopRun, TrainResult, run_loop
from generation.solov2.config import SynthesizerConfig, SynthesizerTrainingConfig
from generation.solov2.data import Augmentation, CocoInstanceDataset, collate_instances, split_image_ids
from generation.solov2.losses import solov2_loss
from generation.solov2.metrics import class_dice, mean_class_dice
from generation.solov2.model import SOLOv2
from generation.solov2.overlay import overlay_instances, save_overlay_grid
from generation.solov2.targets import assign_targets
from generation.training import RunDir, RunOptions, all_reduce_mean, save_loss_curve

OVERLAY_PANEL_SIDE = 256  # overlay panels are magnified to about this many pixels


def evaluate(model: SOLOv2, dataset: CocoInstanceDataset, batch_size: int, overlay_count: int = 0) -> tuple[dict[str, float], list[list[np.ndarray]]]:
    """Mean DICE per category of `model` on `dataset` (instances scored >= the paper's delta),
    and overlay rows [photo, reference, prediction] for its first `overlay_count` images."""
    device = next(model.parameters()).device
    per_image, rows = [], []
    for start in range(0, len(dataset), batch_size):
        samples = [dataset.reference(index) for index in range(start, min(start + batch_size, len(dataset)))]
        images = torch.stack([image_to_tensor(image) for image, _ in samples]).to(device)  # [B, 3, R, R]
        predictions = model.predict(images)
        for (image, reference), predicted in zip(samples, predictions):
            per_image.append(class_dice(predicted, reference))
            if len(rows) < overlay_count:
                rows.append([image, overlay_instances(image, reference), overlay_instances(image, predicted)])
    return mean_class_dice(per_image), rows


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int, time_used: float = 0.0) -> float:
    """Linear warm-up, then cosine decay that reaches zero at `total_steps` or when the time
    budget is used up (`time_used` = fraction of it, 0 without one), whichever comes first,
    so a run cut short by its budget still ends annealed."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, max((step - warmup_steps) / max(1, total_steps - warmup_steps), time_used))
    return 0.5 * (1 + math.cos(math.pi * progress))


def train_synthesizer(options: RunOptions, config: SynthesizerConfig, training: SynthesizerTrainingConfig
                      ) -> TrainResult:
    """Train S on the COCO folder `options.data`; its metrics: epochs, training seconds, images/s, validation DICE.

    `options.max_minutes` is this invocation's time budget: the learning rate anneals to zero within
    it and training stops when it is spent (after validating and checkpointing); `options.bundle`
    receives the final network with its validation DICE; `options.limit` keeps the first N
    training images of the split.
    """
    return run_loop(options, _train, config, training)


def _train(loop: LoopRun, config: SynthesizerConfig, training: SynthesizerTrainingConfig) -> TrainResult:
    options, ctx = loop.options, loop.ctx
    data = Path(options.data)
    train_ids, val_ids = split_image_ids(data, training.val_fraction, training.split_seed)  # bad data fails here
    train_ids = train_ids[:options.limit]
    augmentation = Augmentation(training.flip_probability, training.scale_range, training.colour_jitter)
    train_set = CocoInstanceDataset(data, config.resolution, config.category_ids, train_ids, augmentation)
    val_set = CocoInstanceDataset(data, config.resolution, config.category_ids, val_ids)
    sampler = torch.utils.data.DistributedSampler(train_set, seed=options.seed) if ctx.distributed else None
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=training.batch_size, shuffle=sampler is None, sampler=sampler,
        num_workers=options.workers, collate_fn=collate_instances, drop_last=len(train_set) >= 2 * training.batch_size,
    )
    steps_per_epoch = len(loader)
    total_steps = training.epochs * steps_per_epoch

    model = SOLOv2(config).to(ctx.device)
    network = torch.nn.parallel.DistributedDataParallel(model) if ctx.distributed else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    state = loop.resume({"synthesizer": model}, {"synthesizer": optimizer},
                        {"synthesizer": config, "training": training})
    step, epoch, train_seconds = state.get("step", 0), state.get("epoch", 0), state.get("train_seconds", 0.0)
    logger = loop.open_log(dict(preset=config.preset, seed=options.seed, train_images=len(train_set),
                                val_images=len(val_set), steps_per_epoch=steps_per_epoch, epochs=training.epochs,
                                resumed_at_step=step, parameters=sum(p.numel() for p in model.parameters())))

    budget_s = options.max_minutes * 60 if options.max_minutes is not None else math.inf
    metrics: dict[str, Any] = {"val_dice": {}}
    with loop.progress("train S", total_steps, step) as progress:
        while epoch < training.epochs and not loop.stopped_early:
            if sampler is not None:
                sampler.set_epoch(epoch)
            network.train()
            epoch_start, epoch_images = time.time(), 0
            for images, annotations in loader:
                images = images.to(ctx.device)  # [B, 3, R, R]
                targets = [assign_targets(labels.to(ctx.device), masks.to(ctx.device), config) for labels, masks in annotations]
                losses = solov2_loss(*network(images), targets, config)
                factor = learning_rate_factor(step, training.warmup_steps, total_steps, loop.seconds() / budget_s)
                for group in optimizer.param_groups:
                    group["lr"] = training.learning_rate * factor
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip_norm)
                optimizer.step()
                step += 1
                epoch_images += images.shape[0] * ctx.world_size
                if training.cadence.log_due(step):
                    values = {k: float(all_reduce_mean(v.detach(), ctx)) for k, v in losses.items()}
                    logger.log(step=step, epoch=epoch, lr=optimizer.param_groups[0]["lr"], **values)
                    progress(status=f"loss {values['loss']:.3f}")
                progress(completed=step)
                if loop.out_of_time():
                    break
            elapsed = time.time() - epoch_start
            train_seconds += elapsed
            if loop.stopped_early and epoch_images < len(train_set):
                logger.log(event="time_limit", step=step, epoch=epoch, partial_epoch_images=epoch_images)
            epoch += 1
            if ctx.is_main:
                metrics = _validate(model, val_set, training, config, loop.dir, epoch)
                metrics["images_per_s"] = epoch_images / max(elapsed, 1e-9)
                logger.log(event="epoch", step=step, epoch=epoch, train_seconds=train_seconds,
                           images_per_s=metrics["images_per_s"],
                           **{f"val_dice_{k}": v for k, v in metrics["val_dice"].items()})
                save_loss_curve(loop.dir.log, loop.dir.loss_curve, ["loss", "loss_category", "loss_mask"])
            loop.save(step=step, epoch=epoch, train_seconds=train_seconds)

    metrics.update(epochs=epoch, train_seconds=train_seconds, train_images=len(train_set), val_images=len(val_set))
    if ctx.is_main and options.bundle is not None:
        save_synthesizer(
            options.bundle, model, steps=step, epochs=epoch, train_seconds=round(train_seconds, 1),
            data_fingerprint=dataset_fingerprint(data), train_images=len(train_set), val_images=len(val_set),
            metrics={"val_dice": metrics["val_dice"]}, training=dataclasses.asdict(training),
        )
    return loop.result(step, metrics, bundle=options.bundle)


def _validate(model: SOLOv2, val_set: CocoInstanceDataset, training: SynthesizerTrainingConfig,
              config: SynthesizerConfig, run: RunDir, epoch: int) -> dict[str, Any]:
    """DICE per class on the validation images, and their overlays drawn for this epoch."""
    dice, rows = evaluate(model, val_set, training.batch_size, training.overlay_count)
    zoom = max(1, OVERLAY_PANEL_SIDE // config.resolution)
    save_overlay_grid(rows, run.samples / f"overlay_epoch{epoch:03d}.png", zoom)
    return {"val_dice": dice}


def save_synthesizer(bundle_dir: Path, model: SOLOv2, **record: Any) -> Path:
    """Write S into a model bundle (safetensors + bundle.json entry with `record`)."""
    return save_network(bundle_dir, SYNTHESIZER, model, model.config, **record)
