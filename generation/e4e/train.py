"""`s2m train encoder`: E and its latent discriminator, with G and C frozen (paper eq. 3-5).

Per step: D learns mapping(z) (real) against E(x_sk) (fake), with lazy R1 on real codes; then E
minimises L_sim(x, G(E(x_sk))) + lambda_adv * L_adv^E. The pieces shared with the refiner's
loop live in `generation.paired`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function

from generation.bundle import EMBEDDER, ENCODER, GENERATOR, Bundle, save_network
from generation.data import dataset_fingerprint
from generation.e4e.config import EncoderConfig, EncoderTrainConfig, LatentDiscriminatorConfig
from generation.e4e.model import (
    Encoder,
    LatentDiscriminator,
    discriminator_loss,
    encoder_adversarial_loss,
    r1_penalty,
)
from generation.loop_run import LoopRun, TrainResult, run_loop
from generation.losses import SimilarityConfig
from generation.paired import (
    PairedBatches,
    PairedInputs,
    build_similarity_loss,
    comparison_grid,
    run_record,
    scalar_record,
    warm_start_network,
)
from generation.training import (
    DistContext,
    JsonlLogger,
    RunDir,
    RunOptions,
    all_reduce_gradients,
    all_reduce_mean,
    broadcast_parameters,
    save_loss_curve,
)


def train_encoder(options: RunOptions, paired: PairedInputs, encoder_config: EncoderConfig,
                  similarity_config: SimilarityConfig, config: EncoderTrainConfig) -> TrainResult:
    """Train E (+ latent D) on `options.data`'s photos and `paired`'s sketches; write it into the bundle.

    Its metrics are the last logged losses. The bundle must hold G and C; `encoder_config` must match G's w_dim
    and resolution.
    """
    return run_loop(options, _train_encoder, paired, encoder_config, similarity_config, config)


def _train_encoder(loop: LoopRun, paired: PairedInputs, encoder_config: EncoderConfig,
                   similarity_config: SimilarityConfig, config: EncoderTrainConfig) -> TrainResult:
    options, ctx, device, run = loop.options, loop.ctx, loop.ctx.device, loop.dir
    bundle = Bundle.open(options.required_bundle())
    bundle.check([GENERATOR, EMBEDDER])
    generator = bundle.load(GENERATOR, device)
    similarity, similarity_record = build_similarity_loss(bundle, similarity_config, device)
    w_dim = generator.config.w_dim
    if (encoder_config.resolution, encoder_config.w_dim) != (generator.config.resolution, w_dim):
        raise ValueError(f"the encoder config reads {encoder_config.resolution} px sketches into {encoder_config.w_dim}-d "
                         f"codes but the bundle's generator makes {generator.config.resolution} px images from "
                         f"{w_dim}-d codes")
    encoder = Encoder(encoder_config).to(device)
    warm_start_network(options, paired, ENCODER, encoder, encoder_config)
    encoder.set_latent_average(generator.mapping.w_avg)
    discriminator = LatentDiscriminator(LatentDiscriminatorConfig.for_generator(w_dim)).to(device)
    opt_e = torch.optim.Adam(encoder.parameters(), lr=config.lr_encoder, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_discriminator, betas=config.betas)

    modules = {"encoder": encoder, "discriminator": discriminator}
    optimizers = {"encoder": opt_e, "discriminator": opt_d}
    configs = {"train": config, "encoder": encoder_config, "similarity": similarity_config}
    step = int(loop.resume(modules, optimizers, configs).get("step", 0))
    if options.resume:
        encoder.set_latent_average(generator.mapping.w_avg)  # the bundle's G may have been re-exported
    broadcast_parameters(encoder, ctx)
    broadcast_parameters(discriminator, ctx)
    encoder_ddp = DistributedDataParallel(encoder) if ctx.distributed else encoder

    data = PairedBatches.open(options, paired, encoder_config.resolution, config.batch_size, config.sample_count,
                              ctx, start_step=step)
    sample_sketches, sample_images = data.samples
    val_batch = data.validation
    logger = loop.open_log(None if step else dict(
        preset=config.preset, seed=options.seed, train_config=dataclasses.asdict(config),
        encoder_config=dataclasses.asdict(encoder_config), world_size=ctx.world_size, similarity=similarity_record))

    last_record: dict[str, float] = {}
    with loop.progress("encoder", config.steps, step) as progress:
        while step < config.steps and not loop.out_of_time():
            with record_function("data"):
                sketches, images = data.next(device)  # [B,1,R,R], [B,3,R,R]
            encoder.train()
            with record_function("E forward"):
                w_fake = encoder_ddp(sketches)  # [B, w_dim]

            # Latent discriminator (eq. 3): real codes are mapping(z); R1 lazily every r1_interval.
            with record_function("latent D step"):
                discriminator.requires_grad_(True)
                with torch.no_grad():
                    w_real = generator.mapping(torch.randn(len(sketches), generator.config.z_dim, device=device))
                logits = discriminator(torch.cat([w_real, w_fake.detach()]))
                loss_d = discriminator_loss(logits[: len(w_real)], logits[len(w_real):])
                record_d = {"d_loss": loss_d}
                if step % config.r1_interval == 0:
                    penalty = r1_penalty(discriminator, w_real)
                    loss_d = loss_d + config.r1_gamma / 2 * penalty * config.r1_interval
                    record_d["r1"] = penalty
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                all_reduce_gradients(discriminator, ctx)
                opt_d.step()

            # Encoder (eq. 5): L_sim(x, G(E(x_sk))) + lambda_adv * L_adv^E.
            discriminator.requires_grad_(False)
            with record_function("G synthesis"):
                generated = generator.synthesis(w_fake, noise_mode="const")  # [B, 3, R, R]
            with record_function("L_sim forward"):
                sim = similarity(images, generated)
            adv = encoder_adversarial_loss(discriminator(w_fake))
            loss_e = sim["total"] + config.lambda_adv * adv
            with record_function("backward"):
                opt_e.zero_grad(set_to_none=True)
                loss_e.backward()
            with record_function("optimiser"):
                opt_e.step()
            step += 1

            if config.cadence.log_due(step, last=step == config.steps):
                last_record = {**scalar_record(sim, ctx, "sim_"), **scalar_record(record_d, ctx),
                               "adv_e": float(all_reduce_mean(adv.detach(), ctx)),
                               "loss_e": float(all_reduce_mean(loss_e.detach(), ctx))}
                logger.log(step=step, **last_record)
                progress(status=f"L_sim {last_record['sim_total']:.3f}")
            if config.cadence.sample_due(step) and step < config.steps:
                _encoder_samples(encoder, generator, similarity, sample_sketches, sample_images, val_batch,
                                 run, step, logger, ctx)
            if config.cadence.checkpoint_due(step):
                loop.save(step=step)
            progress(completed=step)

    loop.save(step=step)
    if ctx.is_main:
        _encoder_samples(encoder, generator, similarity, sample_sketches, sample_images, val_batch, run, step,
                         logger, ctx)
        save_loss_curve(run.log, run.loss_curve, ["sim_total", "adv_e", "d_loss"])
        save_network(bundle.root, ENCODER, encoder, encoder_config, steps=step,
                     train_config=dataclasses.asdict(config), similarity=similarity_record,
                     data_fingerprint=dataset_fingerprint(options.data),
                     generator_sha256=bundle.generator_digest,
                     final_losses={k: v for k, v in last_record.items() if k.startswith("sim_")},
                     **run_record(paired, ENCODER))
        logger.log(event="exported", step=step, bundle=str(bundle.root))
    return loop.result(step, last_record, bundle=bundle.root)


@torch.no_grad()
def _encoder_samples(
    encoder: Encoder, generator: nn.Module, similarity: Any, sketches: torch.Tensor, images: torch.Tensor,
    val_batch: tuple[torch.Tensor, torch.Tensor] | None, run: RunDir, step: int, logger: JsonlLogger,
    ctx: DistContext,
) -> None:
    """Grid sketch | G(E(x_sk)) | real on the fixed batch, plus L_sim on free-hand validation sketches."""
    if not ctx.is_main:
        return
    encoder.eval()
    generated = generator.synthesis(encoder(sketches), noise_mode="const")
    comparison_grid([sketches, generated, images], run.samples / f"step{step:07d}.png")
    if val_batch is not None:
        val_sketches, val_images = val_batch
        val_generated = generator.synthesis(encoder(val_sketches), noise_mode="const")
        comparison_grid([val_sketches, val_generated, val_images], run.samples / f"val_step{step:07d}.png")
        logger.log(step=step, **{f"val_sim_{k}": float(v) for k, v in similarity(val_images, val_generated).items()})
    encoder.train()
