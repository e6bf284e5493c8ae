"""StyleGAN2 training loop: D step (+ lazy R1), G step (+ lazy path length), EMA, ADA.

Losses as in Karras et al. 2020 (reference notes, section 3):
    L_D  = softplus(D(G(z))) + softplus(-D(x))                      every step
    L_R1 = gamma/2 * ||grad_x D(x)||^2 * r1_interval                 every r1_interval steps
    L_G  = softplus(-D(G(z)))                                        every step
    L_PL = pl_weight * (||J_w^T y|| - a)^2 * pl_interval              every pl_interval steps
G and D are wrapped in DistributedDataParallel under torchrun; each DDP module is used by
exactly one forward per backward, and every loss touches every parameter of its module.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from formats.errors import InputError
from generation.bundle import GENERATOR, save_network, update_bundle_info
from generation.data import ImageFolderDataset, dataset_fingerprint
from generation.stylegan2.augment import AugmentPipe
from generation.stylegan2.config import DiscriminatorConfig, GanTrainConfig, GeneratorConfig
from generation.stylegan2.networks import Discriminator, Generator
from generation.training import (
    DistContext,
    JsonlLogger,
    ResumableBatchSampler,
    RunDir,
    RunOptions,
    all_reduce_mean,
    budget_spent,
    distributed,
    make_progress,
    restore_run_state,
    save_image_grid,
    save_loss_curve,
    save_run_state,
    seed_everything,
)

LOSS_CURVE_KEYS = ["loss_D", "loss_G", "r1", "pl"]


class MixingGenerator(nn.Module):
    """G as it is trained: z -> ws with style mixing after `cutoff`, -> image with random noise.

    One module so that DistributedDataParallel sees a single forward per backward; returns the
    ws too because the path-length penalty differentiates the image with respect to them.
    """

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, z_mix: torch.Tensor, cutoff: int, update_w_avg: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
        # z, z_mix [B, z_dim] -> image [B, 3, R, R], ws [B, num_ws, w_dim]
        g = self.generator
        ws = g.synthesis.broadcast_ws(g.mapping(z, update_w_avg=update_w_avg))
        if cutoff < g.num_ws:
            mixed = g.synthesis.broadcast_ws(g.mapping(z_mix))
            ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        return g.synthesis(ws, noise_mode="random"), ws


@dataclass
class TrainState:
    """Everything that changes during training besides the weights and optimisers."""

    step: int = 0
    images_seen: int = 0
    pl_mean: float = 0.0
    last_r1: float = 0.0
    last_pl: float = 0.0


def style_mixing_cutoff(num_ws: int, probability: float) -> int:
    """A random crossover index in [1, num_ws) with `probability`, else num_ws (no mixing)."""
    cutoff = int(torch.randint(1, num_ws, ()).item())
    return cutoff if torch.rand(()).item() < probability else num_ws


def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(ema.buffers(), model.buffers()):
            b_ema.copy_(b)


def ema_beta(config: GanTrainConfig, images_seen: int) -> float:
    """0.5 ** (batch / half-life), the half-life ramped up to ema_rampup * images seen."""
    half_life = config.ema_half_life_kimg * 1000
    if config.ema_rampup > 0:
        half_life = min(half_life, images_seen * config.ema_rampup)
    return 0.5 ** (config.batch_size / max(half_life, 1e-8))


def export_generator(bundle_dir: Path, g_ema: Generator, options: RunOptions, state: TrainState,
                     fingerprint: str, train_config: GanTrainConfig) -> Path:
    """Save a copy of G_ema, its w_avg estimated over `w_avg_samples` z, into the bundle."""
    exported = copy.deepcopy(g_ema).eval()
    exported.mapping.estimate_w_avg(exported.config.w_avg_samples, seed=options.seed)
    path = save_network(
        bundle_dir, GENERATOR, exported, exported.config,
        steps=state.step, images_seen=state.images_seen, data_fingerprint=fingerprint,
        train_config=dataclasses.asdict(train_config),
    )
    update_bundle_info(bundle_dir, preset=train_config.preset, resolution=exported.config.resolution)
    return path


def train_generator(
    options: RunOptions,
    g_config: GeneratorConfig,
    d_config: DiscriminatorConfig,
    config: GanTrainConfig,
) -> dict[str, Any]:
    """Train G and D on the images of `options.data` up to `config.steps` steps (or `options.max_minutes`).

    Returns the final step, images seen, steps and images/s of this invocation, ADA's p, and
    the data fingerprint.
    """
    if g_config.resolution != d_config.resolution:
        raise ValueError(f"G ({g_config.resolution}px) and D ({d_config.resolution}px) resolutions differ")
    with distributed(options.device) as ctx:
        return _train(options, g_config, d_config, config, ctx)


def _train(options: RunOptions, g_config: GeneratorConfig, d_config: DiscriminatorConfig,
           config: GanTrainConfig, ctx: DistContext) -> dict[str, Any]:
    if config.batch_size % ctx.world_size:
        raise ValueError(f"batch size {config.batch_size} is not divisible by {ctx.world_size} processes")
    batch = config.batch_size // ctx.world_size
    device = ctx.device
    dataset = ImageFolderDataset(options.data, g_config.resolution, mirror=False, limit=options.limit)
    fingerprint = dataset_fingerprint(options.data)
    run = RunDir(Path(options.run_dir))
    if ctx.is_main:
        run.create()
    seed_everything(options.seed + ctx.rank)

    generator = Generator(g_config).to(device)
    discriminator = Discriminator(d_config).to(device)
    g_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    g_lr, g_betas = config.adam_hyper(config.pl_interval if config.pl_weight > 0 else None)
    d_lr, d_betas = config.adam_hyper(config.r1_interval if config.r1_gamma > 0 else None)
    opt_g = torch.optim.Adam(generator.parameters(), lr=g_lr, betas=g_betas, eps=config.adam_eps)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=d_lr, betas=d_betas, eps=config.adam_eps)
    augment = AugmentPipe.from_config(config)
    state = TrainState()
    modules = {"G": generator, "D": discriminator, "G_ema": g_ema}
    optimizers = {"G": opt_g, "D": opt_d}
    configs = {"generator": g_config, "discriminator": d_config, "train": config}
    if options.resume:
        extra = restore_run_state(run.checkpoint, ctx, modules, optimizers, configs, options.seed)
        state = TrainState(**extra["state"])
        augment.p = extra["augment_p"]
        if extra.get("data_fingerprint", fingerprint) != fingerprint:  # runs before this check did not record it
            raise InputError(f"{options.data} is not the dataset this run trained on (its fingerprint differs); "
                             "regenerate it with the run's command or start a new run dir")

    mixing = MixingGenerator(generator)
    g_train: nn.Module = mixing
    d_train: nn.Module = discriminator
    if ctx.distributed:
        device_ids = [device.index] if device.type == "cuda" else None
        g_train = nn.parallel.DistributedDataParallel(mixing, device_ids=device_ids)
        d_train = nn.parallel.DistributedDataParallel(discriminator, device_ids=device_ids)
    g_params = list(generator.parameters())

    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                                  shuffle=True, seed=options.seed, drop_last=True)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=ResumableBatchSampler(sampler, batch, start=state.step),
        num_workers=options.workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(options.seed),  # keeps the global RNG untouched
    )
    reals = iter(loader)
    fixed_z = torch.randn(config.sample_grid, g_config.z_dim,
                          generator=torch.Generator().manual_seed(options.seed)).to(device)
    logger = JsonlLogger(run.log, enabled=ctx.is_main)
    if ctx.is_main and not options.resume:
        logger.log(event="start", preset=config.preset, seed=options.seed, world_size=ctx.world_size, images=len(dataset),
                   generator=dataclasses.asdict(g_config), train=dataclasses.asdict(config))

    def save_state() -> None:
        save_run_state(run.checkpoint, ctx, modules, optimizers, configs, state=dataclasses.asdict(state),
                       augment_p=augment.p, data_fingerprint=fingerprint)
        if ctx.is_main and options.bundle is not None:
            export_generator(options.bundle, g_ema, options, state, fingerprint, config)

    def save_samples() -> None:
        with torch.no_grad():
            images = g_ema(fixed_z, noise_mode="const")  # [N, 3, R, R]
        save_image_grid(images, run.samples / f"step-{state.step:07d}.png",
                        nrow=int(math.ceil(math.sqrt(config.sample_grid))))
        save_loss_curve(run.log, run.loss_curve, LOSS_CURVE_KEYS)

    run_start = window_start = time.perf_counter()
    out_of_time = False
    window_images = 0
    real_signs: list[torch.Tensor] = []
    start_step = state.step
    with make_progress(disable=not (ctx.is_main and options.progress)) as progress:
        task = progress.add_task("generator", total=config.steps, completed=start_step, status="")
        while state.step < config.steps and not out_of_time:
            real = next(reals).to(device, non_blocking=True)  # [b, 3, R, R]
            if config.mirror:
                flip = torch.rand(real.shape[0], 1, 1, 1) < 0.5
                real = torch.where(flip.to(device), real.flip(-1), real)
            do_r1 = config.r1_gamma > 0 and state.step % config.r1_interval == 0
            do_pl = config.pl_weight > 0 and state.step % config.pl_interval == 0

            # D main: L_D = softplus(D(G(z))) + softplus(-D(x)), reals and fakes in one batch.
            z, z_mix = torch.randn(2, batch, g_config.z_dim, device=device)
            cutoff = style_mixing_cutoff(g_config.num_ws, config.style_mixing_prob)
            with torch.no_grad():
                fake, _ = mixing(z, z_mix, cutoff, update_w_avg=False)
            logits = d_train(augment(torch.cat([real, fake])))
            real_logits, fake_logits = logits[:batch], logits[batch:]
            loss_d = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            real_signs.append(real_logits.detach().sign().mean())

            # D reg: lazy R1 on reals, through the augmentation, w.r.t. the un-augmented image.
            if do_r1:
                real_in = real.detach().requires_grad_(True)
                logits_r1 = d_train(augment(real_in))
                (grad,) = torch.autograd.grad(logits_r1.sum(), real_in, create_graph=True)
                r1 = grad.square().sum(dim=(1, 2, 3)).mean()  # [] mean over batch of sum over pixels
                loss_r1 = r1 * (config.r1_gamma / 2) * config.r1_interval + logits_r1.mean() * 0
                opt_d.zero_grad(set_to_none=True)
                loss_r1.backward()
                opt_d.step()
                state.last_r1 = float(all_reduce_mean(r1.detach(), ctx))

            # G main: L_G = softplus(-D(G(z))); only G's parameters receive gradients.
            z, z_mix = torch.randn(2, batch, g_config.z_dim, device=device)
            cutoff = style_mixing_cutoff(g_config.num_ws, config.style_mixing_prob)
            fake, _ = g_train(z, z_mix, cutoff, update_w_avg=True)
            loss_g = F.softplus(-discriminator(augment(fake))).mean()
            opt_g.zero_grad(set_to_none=True)
            torch.autograd.backward(loss_g, inputs=g_params)
            opt_g.step()

            # G reg: lazy path length, (||J_w^T y|| - a)^2 with y ~ N(0, I) / sqrt(H W).
            if do_pl:
                pl_batch = batch // config.pl_batch_shrink
                z, z_mix = torch.randn(2, pl_batch, g_config.z_dim, device=device)
                cutoff = style_mixing_cutoff(g_config.num_ws, config.style_mixing_prob)
                fake, ws = g_train(z, z_mix, cutoff, update_w_avg=False)
                noise = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
                (grad,) = torch.autograd.grad((fake * noise).sum(), ws, create_graph=True)
                lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # [b/2]
                batch_mean = float(all_reduce_mean(lengths.detach().mean(), ctx))
                state.pl_mean = state.pl_mean + config.pl_decay * (batch_mean - state.pl_mean)
                penalty = (lengths - state.pl_mean).square().mean()
                loss_pl = penalty * config.pl_weight * config.pl_interval + fake.mean() * 0
                opt_g.zero_grad(set_to_none=True)
                torch.autograd.backward(loss_pl, inputs=g_params)
                opt_g.step()
                state.last_pl = float(all_reduce_mean(penalty.detach(), ctx))

            state.step += 1
            state.images_seen += config.batch_size
            window_images += config.batch_size
            update_ema(g_ema, generator, ema_beta(config, state.images_seen))

            if augment.adaptive and state.step % config.ada_interval == 0:
                sign_mean = float(all_reduce_mean(torch.stack(real_signs).mean(), ctx))
                augment.adjust(sign_mean, config.batch_size * len(real_signs))
                real_signs.clear()
            out_of_time = budget_spent(time.perf_counter() - run_start, options.max_minutes, ctx)
            last = state.step == config.steps or out_of_time
            if state.step % config.log_every == 0 or last:
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": state.step, "kimg": state.images_seen / 1000,
                    "loss_D": float(all_reduce_mean(loss_d.detach(), ctx)),
                    "loss_G": float(all_reduce_mean(loss_g.detach(), ctx)),
                    "D_real": float(all_reduce_mean(real_logits.detach().mean(), ctx)),
                    "D_fake": float(all_reduce_mean(fake_logits.detach().mean(), ctx)),
                    "r1": state.last_r1, "pl": state.last_pl, "pl_mean": state.pl_mean, "augment_p": augment.p,
                    "images_per_s": window_images / max(elapsed, 1e-9),
                }
                logger.log(**record)
                progress.update(task, completed=state.step,
                                status=f"D {record['loss_D']:.3f} G {record['loss_G']:.3f} {record['images_per_s']:.1f} img/s")
                window_start, window_images = time.perf_counter(), 0
            if ctx.is_main and (state.step % config.sample_every == 0 or last):
                save_samples()
            if state.step % config.checkpoint_every == 0 or last:
                save_state()
    steps_this_run = state.step - start_step
    return {"step": state.step, "images_seen": state.images_seen, "steps_this_run": steps_this_run,
            "images_per_s": steps_this_run * config.batch_size / max(time.perf_counter() - run_start, 1e-9),
            "augment_p": augment.p, "fingerprint": fingerprint}
