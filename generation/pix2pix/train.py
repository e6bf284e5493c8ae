"""`s2m train pix2pix`: the baseline on the same synthesized (sketch, photo) pairs as E and H.

Per batch (paper eq. 4): D step on log D(x_sk, x) + log(1 - D(x_sk, G(x_sk))); then, against
the updated D, G step on the non-saturating adversarial term + lambda * |x - G(x_sk)|_1. Uses the shared run protocol
(`LoopRun`), so a run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from generation.bundle import PIX2PIX, save_network
from generation.data import dataset_fingerprint
from generation.loop_run import LoopRun, TrainResult, run_loop
from generation.paired import PairedBatches, PairedInputs, comparison_grid, scalar_record
from generation.pix2pix.config import Pix2PixConfig, Pix2PixTrainConfig
from generation.pix2pix.model import PatchDiscriminator, UNetGenerator
from generation.training import (
    DistContext,
    RunDir,
    RunOptions,
    all_reduce_gradients,
    broadcast_parameters,
    save_loss_curve,
)

LOSS_KEYS = ["loss_D", "loss_G_adv", "loss_G_l1"]


def discriminator_loss(discriminator: torch.nn.Module, sketches: torch.Tensor, images: torch.Tensor,
                       fake: torch.Tensor) -> torch.Tensor:
    """D's half of eq. 1, halved as in pix2pix: real (sketch, photo) pairs -> 1, generated ones -> 0."""
    real_logits = discriminator(sketches, images)  # [B, 1, P, P]
    fake_logits = discriminator(sketches, fake.detach())
    return 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(discriminator: torch.nn.Module, sketches: torch.Tensor, images: torch.Tensor, fake: torch.Tensor,
                   lambda_l1: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 4 for G: non-saturating adversarial term + lambda |x - G(x_sk)|_1; (total, parts)."""
    judged = discriminator(sketches, fake)
    adversarial = F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged))
    l1 = (fake - images).abs().mean()
    return adversarial + lambda_l1 * l1, {"loss_G_adv": adversarial, "loss_G_l1": l1}


def train_pix2pix(options: RunOptions, paired: PairedInputs, net_config: Pix2PixConfig,
                  config: Pix2PixTrainConfig) -> TrainResult:
    """Train pix2pix and write its generator into the bundle folder `options.bundle` (created if new);
    its metrics are the last logged losses."""
    return run_loop(options, _train, paired, net_config, config)


def _train(loop: LoopRun, paired: PairedInputs, net_config: Pix2PixConfig, config: Pix2PixTrainConfig) -> TrainResult:
    options, ctx, device, run = loop.options, loop.ctx, loop.ctx.device, loop.dir
    bundle_dir = options.required_bundle()
    generator = UNetGenerator(net_config).to(device)
    discriminator = PatchDiscriminator(net_config).to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=config.betas)
    modules = {"generator": generator, "discriminator": discriminator}
    optimizers = {"generator": opt_g, "discriminator": opt_d}
    configs = {"train": config, "pix2pix": net_config}
    step = int(loop.resume(modules, optimizers, configs).get("step", 0))
    for module in modules.values():
        broadcast_parameters(module, ctx)
    # Not DDP-wrapped: D runs three times per step; gradients are averaged by hand instead.
    data = PairedBatches.open(options, paired, net_config.resolution, config.batch_size, config.sample_count, ctx,
                              start_step=step)
    samples = data.samples
    logger = loop.open_log(None if step else dict(
        preset=config.preset, seed=options.seed, train_config=dataclasses.asdict(config),
        pix2pix_config=dataclasses.asdict(net_config), world_size=ctx.world_size))

    last: dict[str, float] = {}
    with loop.progress("pix2pix", config.steps, step) as progress:
        while step < config.steps and not loop.out_of_time():
            sketches, images = data.next(device)  # [B,1,R,R], [B,3,R,R]
            generator.train(), discriminator.train()
            fake = generator(sketches)  # [B, 3, R, R]
            loss_d = discriminator_loss(discriminator, sketches, images, fake)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            all_reduce_gradients(discriminator, ctx)
            opt_d.step()
            loss_g, parts = generator_loss(discriminator, sketches, images, fake, config.lambda_l1)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward(inputs=list(generator.parameters()))  # D's gradients are not wanted here
            all_reduce_gradients(generator, ctx)
            opt_g.step()
            step += 1
            if config.cadence.log_due(step, last=step == config.steps):
                last = scalar_record({"loss_D": loss_d, **parts}, ctx)
                logger.log(step=step, **last)
                progress(status=f"D {last['loss_D']:.3f} L1 {last['loss_G_l1']:.3f}")
            if config.cadence.sample_due(step) and step < config.steps:
                _samples(generator, samples, run, step, ctx)
            if config.cadence.checkpoint_due(step):
                loop.save(step=step)
            progress(completed=step)

    loop.save(step=step)
    if ctx.is_main:
        _samples(generator, samples, run, step, ctx)
        save_loss_curve(run.log, run.loss_curve, LOSS_KEYS)
        save_network(bundle_dir, PIX2PIX, generator.eval(), net_config, steps=step,
                     train_config=dataclasses.asdict(config), data_fingerprint=dataset_fingerprint(options.data),
                     train_pairs=len(data.loader.dataset), final_losses=last)
        logger.log(event="exported", step=step, bundle=str(bundle_dir))
    return loop.result(step, last, bundle=bundle_dir)


@torch.no_grad()
def _samples(generator: UNetGenerator, samples: tuple[torch.Tensor, torch.Tensor], run: RunDir, step: int,
             ctx: DistContext) -> None:
    """Grid sketch | G(sketch) | photo on the fixed batch."""
    if not ctx.is_main:
        return
    sketches, images = samples
    generator.eval()
    comparison_grid([sketches, generator(sketches), images], run.samples / f"step{step:07d}.png")
    generator.train()
