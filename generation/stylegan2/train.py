"""StyleGAN2 training loop: D step (+ lazy R1), G step (+ lazy path length), EMA, ADA.

Losses as in Karras et al. 2020 (reference notes, section 3):
    L_D  = softplus(D(G(z))) + softplus(-D(x))                      every step
    L_R1 = gamma/2 * ||grad_x D(x)||^2 * r1_interval                 every r1_interval steps
    L_G  = softplus(-D(G(z)))                                        every step
    L_PL = pl_weight * (||J_w^T y|| - a)^2 * pl_interval              every pl_interval steps
Each loss has its own step function below, in the order `train_step` takes them (the order of the
random draws a resumed run repeats); the run around them is `LoopRun`'s. G and D are wrapped in
DistributedDataParallel under torchrun; each DDP module is used by exactly one forward per
backward, and every loss touches every parameter of its module.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from formats.errors import InputError
from generation.bundle import GENERATOR, save_network, update_bundle_info
from generation.data import ImageFolderDataset, dataset_fingerprint
from generation.loop_run import LoopRun, TrainResult, run_loop
from generation.stylegan2.augment import AugmentPipe
from generation.stylegan2.config import DiscriminatorConfig, GanTrainConfig, GeneratorConfig
from generation.stylegan2.networks import Discriminator, Generator
from generation.training import (
    DistContext,
    ResumableBatchSampler,
    RunDir,
    RunOptions,
    all_reduce_mean,
    save_image_grid,
    save_loss_curve,
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
) -> TrainResult:
    """Train G and D on the images of `options.data` up to `config.steps` steps (or `options.max_minutes`).

    Its metrics: images seen, images/s of this invocation, ADA's p and the data fingerprint.
    """
    if g_config.resolution != d_config.resolution:
        raise ValueError(f"G ({g_config.resolution}px) and D ({d_config.resolution}px) resolutions differ")
    return run_loop(options, _train, g_config, d_config, config)


@dataclass
class Gan:
    """G, D, G_ema, their optimisers and ADA; `g_train` and `d_train` are G (with style mixing) and D
    as trained, wrapped in DistributedDataParallel under torchrun once `distribute` is called."""

    generator: Generator
    discriminator: Discriminator
    g_ema: Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    augment: AugmentPipe
    mixing: MixingGenerator
    g_train: nn.Module
    d_train: nn.Module

    @classmethod
    def build(cls, g_config: GeneratorConfig, d_config: DiscriminatorConfig, config: GanTrainConfig,
              device: torch.device) -> "Gan":
        generator = Generator(g_config).to(device)
        discriminator = Discriminator(d_config).to(device)
        g_ema = copy.deepcopy(generator).eval().requires_grad_(False)
        g_lr, g_betas = config.adam_hyper(config.pl_interval if config.pl_weight > 0 else None)
        d_lr, d_betas = config.adam_hyper(config.r1_interval if config.r1_gamma > 0 else None)
        opt_g = torch.optim.Adam(generator.parameters(), lr=g_lr, betas=g_betas, eps=config.adam_eps)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=d_lr, betas=d_betas, eps=config.adam_eps)
        mixing = MixingGenerator(generator)
        return cls(generator, discriminator, g_ema, opt_g, opt_d, AugmentPipe.from_config(config), mixing,
                   mixing, discriminator)

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.generator, "D": self.discriminator, "G_ema": self.g_ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_g, "D": self.opt_d}

    def distribute(self, ctx: DistContext) -> None:
        """Wrap G and D for DDP (after a resume: DDP starts every process from rank 0's weights)."""
        if ctx.distributed:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.g_train = nn.parallel.DistributedDataParallel(self.mixing, device_ids=device_ids)
            self.d_train = nn.parallel.DistributedDataParallel(self.discriminator, device_ids=device_ids)


@dataclass
class StepLosses:
    """The unregularised losses and D's logits of one step, kept for the log."""

    loss_d: torch.Tensor
    loss_g: torch.Tensor
    real_logits: torch.Tensor
    fake_logits: torch.Tensor


def _latents(batch: int, g_config: GeneratorConfig, config: GanTrainConfig, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """z, z_mix [batch, z_dim] and the style-mixing crossover, drawn in this order."""
    z, z_mix = torch.randn(2, batch, g_config.z_dim, device=device)
    return z, z_mix, style_mixing_cutoff(g_config.num_ws, config.style_mixing_prob)


def discriminator_step(gan: Gan, real: torch.Tensor, g_config: GeneratorConfig, config: GanTrainConfig
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_D = softplus(D(G(z))) + softplus(-D(x)), reals and fakes in one batch; (L_D, real, fake logits)."""
    batch = real.shape[0]
    z, z_mix, cutoff = _latents(batch, g_config, config, real.device)
    with torch.no_grad():
        fake, _ = gan.mixing(z, z_mix, cutoff, update_w_avg=False)
    logits = gan.d_train(gan.augment(torch.cat([real, fake])))
    real_logits, fake_logits = logits[:batch], logits[batch:]
    loss_d = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    gan.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    gan.opt_d.step()
    return loss_d, real_logits, fake_logits


def r1_step(gan: Gan, real: torch.Tensor, config: GanTrainConfig) -> torch.Tensor:
    """Lazy R1 on reals, through the augmentation, w.r.t. the un-augmented image; returns the penalty."""
    real_in = real.detach().requires_grad_(True)
    logits = gan.d_train(gan.augment(real_in))
    (grad,) = torch.autograd.grad(logits.sum(), real_in, create_graph=True)
    r1 = grad.square().sum(dim=(1, 2, 3)).mean()  # [] mean over batch of sum over pixels
    loss_r1 = r1 * (config.r1_gamma / 2) * config.r1_interval + logits.mean() * 0
    gan.opt_d.zero_grad(set_to_none=True)
    loss_r1.backward()
    gan.opt_d.step()
    return r1


def generator_step(gan: Gan, batch: int, g_config: GeneratorConfig, config: GanTrainConfig,
                   device: torch.device) -> torch.Tensor:
    """L_G = softplus(-D(G(z))); only G's parameters receive gradients."""
    z, z_mix, cutoff = _latents(batch, g_config, config, device)
    fake, _ = gan.g_train(z, z_mix, cutoff, update_w_avg=True)
    loss_g = F.softplus(-gan.discriminator(gan.augment(fake))).mean()
    gan.opt_g.zero_grad(set_to_none=True)
    torch.autograd.backward(loss_g, inputs=list(gan.generator.parameters()))
    gan.opt_g.step()
    return loss_g


def path_length_step(gan: Gan, batch: int, g_config: GeneratorConfig, config: GanTrainConfig, state: TrainState,
                     ctx: DistContext) -> torch.Tensor:
    """Lazy path length, (||J_w^T y|| - a)^2 with y ~ N(0, I) / sqrt(H W); moves a (`state.pl_mean`)."""
    z, z_mix, cutoff = _latents(batch // config.pl_batch_shrink, g_config, config, ctx.device)
    fake, ws = gan.g_train(z, z_mix, cutoff, update_w_avg=False)
    noise = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
    (grad,) = torch.autograd.grad((fake * noise).sum(), ws, create_graph=True)
    lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # [b/2]
    batch_mean = float(all_reduce_mean(lengths.detach().mean(), ctx))
    state.pl_mean = state.pl_mean + config.pl_decay * (batch_mean - state.pl_mean)
    penalty = (lengths - state.pl_mean).square().mean()
    loss_pl = penalty * config.pl_weight * config.pl_interval + fake.mean() * 0
    gan.opt_g.zero_grad(set_to_none=True)
    torch.autograd.backward(loss_pl, inputs=list(gan.generator.parameters()))
    gan.opt_g.step()
    return penalty


def train_step(gan: Gan, real: torch.Tensor, state: TrainState, g_config: GeneratorConfig, config: GanTrainConfig,
               ctx: DistContext) -> StepLosses:
    """One step: D, lazy R1, G, lazy path length, then the EMA of G (reals [b, 3, R, R])."""
    if config.mirror:
        flip = torch.rand(real.shape[0], 1, 1, 1) < 0.5
        real = torch.where(flip.to(ctx.device), real.flip(-1), real)
    loss_d, real_logits, fake_logits = discriminator_step(gan, real, g_config, config)
    if config.r1_gamma > 0 and state.step % config.r1_interval == 0:
        state.last_r1 = float(all_reduce_mean(r1_step(gan, real, config).detach(), ctx))
    loss_g = generator_step(gan, real.shape[0], g_config, config, ctx.device)
    if config.pl_weight > 0 and state.step % config.pl_interval == 0:
        penalty = path_length_step(gan, real.shape[0], g_config, config, state, ctx)
        state.last_pl = float(all_reduce_mean(penalty.detach(), ctx))
    state.step += 1
    state.images_seen += config.batch_size
    update_ema(gan.g_ema, gan.generator, ema_beta(config, state.images_seen))
    return StepLosses(loss_d, loss_g, real_logits, fake_logits)


def real_batches(options: RunOptions, dataset: ImageFolderDataset, batch: int, ctx: DistContext, start_step: int
                 ) -> Iterator[torch.Tensor]:
    """This process's shuffled batches of reals [b, 3, R, R] from batch `start_step` on (the same when resumed)."""
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                                  shuffle=True, seed=options.seed, drop_last=True)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=ResumableBatchSampler(sampler, batch, start=start_step),
        num_workers=options.workers, pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(options.seed),  # keeps the global RNG untouched
    )
    return (real.to(ctx.device, non_blocking=True) for real in loader)


def log_record(losses: StepLosses, state: TrainState, augment_p: float, images_per_s: float, ctx: DistContext
               ) -> dict[str, float]:
    """One log line: the step's losses and D's logits (averaged over processes), the regularisers, ADA's p."""
    mean = {name: float(all_reduce_mean(value.detach().mean(), ctx)) for name, value in (
        ("loss_D", losses.loss_d), ("loss_G", losses.loss_g), ("D_real", losses.real_logits),
        ("D_fake", losses.fake_logits))}
    return {"step": state.step, "kimg": state.images_seen / 1000, **mean, "r1": state.last_r1, "pl": state.last_pl,
            "pl_mean": state.pl_mean, "augment_p": augment_p, "images_per_s": images_per_s}


def _train(loop: LoopRun, g_config: GeneratorConfig, d_config: DiscriminatorConfig, config: GanTrainConfig) -> TrainResult:
    options, ctx = loop.options, loop.ctx
    if config.batch_size % ctx.world_size:
        raise ValueError(f"batch size {config.batch_size} is not divisible by {ctx.world_size} processes")
    batch = config.batch_size // ctx.world_size
    dataset = ImageFolderDataset(options.data, g_config.resolution, mirror=False, limit=options.limit)
    fingerprint = dataset_fingerprint(options.data)
    gan = Gan.build(g_config, d_config, config, ctx.device)
    extra = loop.resume(gan.modules(), gan.optimizers(),
                        {"generator": g_config, "discriminator": d_config, "train": config})
    state = TrainState(**extra.get("state", {}))
    gan.augment.p = extra.get("augment_p", gan.augment.p)
    if extra.get("data_fingerprint", fingerprint) != fingerprint:  # runs before this check did not record it
        raise InputError(f"{options.data} is not the dataset this run trained on (its fingerprint differs); "
                         "regenerate it with the run's command or start a new run dir")
    gan.distribute(ctx)
    reals = real_batches(options, dataset, batch, ctx, state.step)
    fixed_z = torch.randn(config.sample_grid, g_config.z_dim,
                          generator=torch.Generator().manual_seed(options.seed)).to(ctx.device)
    logger = loop.open_log(None if options.resume else dict(
        preset=config.preset, seed=options.seed, world_size=ctx.world_size, images=len(dataset),
        generator=dataclasses.asdict(g_config), train=dataclasses.asdict(config)))

    window_start, window_images = time.perf_counter(), 0
    real_signs: list[torch.Tensor] = []
    with loop.progress("generator", config.steps, state.step) as progress:
        while state.step < config.steps and not loop.stopped_early:
            losses = train_step(gan, next(reals), state, g_config, config, ctx)
            window_images += config.batch_size
            real_signs.append(losses.real_logits.detach().sign().mean())
            if gan.augment.adaptive and state.step % config.ada_interval == 0:
                sign_mean = float(all_reduce_mean(torch.stack(real_signs).mean(), ctx))
                gan.augment.adjust(sign_mean, config.batch_size * len(real_signs))
                real_signs.clear()
            last = loop.out_of_time() or state.step == config.steps
            if config.cadence.log_due(state.step, last):
                record = log_record(losses, state, gan.augment.p,
                                    window_images / max(time.perf_counter() - window_start, 1e-9), ctx)
                logger.log(**record)
                progress(completed=state.step, status=f"D {record['loss_D']:.3f} G {record['loss_G']:.3f} "
                                                                   f"{record['images_per_s']:.1f} img/s")
                window_start, window_images = time.perf_counter(), 0
            if ctx.is_main and config.cadence.sample_due(state.step, last):
                save_samples(gan.g_ema, fixed_z, loop.dir, state.step, config)
            if config.cadence.checkpoint_due(state.step, last):
                loop.save(state=dataclasses.asdict(state), augment_p=gan.augment.p, data_fingerprint=fingerprint)
                if ctx.is_main and options.bundle is not None:
                    export_generator(options.bundle, gan.g_ema, options, state, fingerprint, config)
    if ctx.is_main and options.bundle is not None and state.step == loop.start_step:
        # a resumed run asked for no further step: how a finished run's G_ema goes into a bundle
        export_generator(options.bundle, gan.g_ema, options, state, fingerprint, config)
    images_per_s = (state.step - loop.start_step) * config.batch_size / max(loop.seconds(), 1e-9)
    return loop.result(state.step, {"images_seen": state.images_seen, "images_per_s": images_per_s,
                                    "augment_p": gan.augment.p, "fingerprint": fingerprint}, bundle=options.bundle)


def save_samples(g_ema: Generator, fixed_z: torch.Tensor, run: RunDir, step: int, config: GanTrainConfig) -> None:
    """G_ema's images of the fixed z (comparable over time) and the loss curve so far."""
    with torch.no_grad():
        images = g_ema(fixed_z, noise_mode="const")  # [N, 3, R, R]
    save_image_grid(images, run.samples / f"step-{step:07d}.png", nrow=int(math.ceil(math.sqrt(config.sample_grid))))
    save_loss_curve(run.log, run.loss_curve, LOSS_CURVE_KEYS)
