"""`s2m train refiner`: H with S, E, G and C frozen; L_sim at each of the T refinement steps.

For each batch: w = E(x_sk) and x_0 = G(w) without gradients; then for t = 1..T,
Delta_t = H(x_sk, x_{t-1}), x_t = G(w; theta * (1 + sum_{i<=t} Delta_i)), and L_sim(x, x_t) is
back-propagated on its own (earlier steps detached, as HyperStyle does); one optimiser step.
C reads the real images once per batch for the T losses.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function

from generation.bundle import EMBEDDER, ENCODER, GENERATOR, REFINER, Bundle, save_network
from generation.data import dataset_fingerprint
from generation.hyperstyle.config import HyperNetworkConfig, RefinerTrainConfig
from generation.hyperstyle.model import HyperNetwork, refinement_step
from generation.loop_run import LoopRun, TrainResult, run_loop
from generation.losses import SimilarityConfig
from generation.paired import (
    PairedBatches,
    PairedInputs,
    build_similarity_loss,
    comparison_grid,
    run_record,
    warm_start_network,
)
from generation.pipeline import Sketch2MedI
from generation.training import (
    DistContext,
    JsonlLogger,
    RunDir,
    RunOptions,
    all_reduce_mean,
    broadcast_parameters,
    save_loss_curve,
)


def train_refiner(options: RunOptions, paired: PairedInputs, hyper_config: HyperNetworkConfig,
                  similarity_config: SimilarityConfig, config: RefinerTrainConfig) -> TrainResult:
    """Train H and write it into the bundle (which must already hold G, C and E); its metrics are the
    last logged L_sim."""
    return run_loop(options, _train_refiner, paired, hyper_config, similarity_config, config)


def _train_refiner(loop: LoopRun, paired: PairedInputs, hyper_config: HyperNetworkConfig,
                   similarity_config: SimilarityConfig, config: RefinerTrainConfig) -> TrainResult:
    options, ctx, device, run = loop.options, loop.ctx, loop.ctx.device, loop.dir
    bundle = Bundle.open(options.required_bundle())
    bundle.check([GENERATOR, ENCODER, EMBEDDER])
    bundle.check_trained_against_generator([ENCODER])
    generator = bundle.load(GENERATOR, device)
    encoder = bundle.load(ENCODER, device)
    similarity, similarity_record = build_similarity_loss(bundle, similarity_config, device)
    if hyper_config.resolution != generator.config.resolution:
        raise ValueError(f"the refiner config refines {hyper_config.resolution} px images but the bundle's "
                         f"generator makes {generator.config.resolution} px images")
    hypernet = HyperNetwork(hyper_config, generator.synthesis.weight_shapes()).to(device)
    warm_start_network(options, paired, REFINER, hypernet, hyper_config)
    optimizer = torch.optim.Adam(hypernet.parameters(), lr=config.lr, betas=config.betas)

    modules, optimizers = {"refiner": hypernet}, {"refiner": optimizer}
    configs = {"train": config, "refiner": hyper_config, "similarity": similarity_config}
    step = int(loop.resume(modules, optimizers, configs).get("step", 0))
    broadcast_parameters(hypernet, ctx)
    hypernet_ddp = DistributedDataParallel(hypernet) if ctx.distributed else hypernet

    data = PairedBatches.open(options, paired, hyper_config.resolution, config.batch_size, config.sample_count,
                              ctx, start_step=step)
    samples, val_batch = data.samples, data.validation
    logger = loop.open_log(None if step else dict(
        preset=config.preset, seed=options.seed, train_config=dataclasses.asdict(config),
        refiner_config=dataclasses.asdict(hyper_config), layers=hypernet.layer_names, world_size=ctx.world_size,
        similarity=similarity_record))

    last_record: dict[str, float] = {}
    with loop.progress("refiner", config.steps, step) as progress:
        while step < config.steps and not loop.out_of_time():
            with record_function("data"):
                sketches, images = data.next(device)  # [B,1,R,R], [B,3,R,R]
            hypernet.train()
            logging = config.cadence.log_due(step + 1, last=step + 1 == config.steps)
            with torch.no_grad(), record_function("E and x_0"):
                w = encoder(sketches)  # [B, w_dim]
                current = generator.synthesis(w, noise_mode="const")  # x_0 [B, 3, R, R]
                target = similarity.target(images)  # C reads the real images once for all T steps
                record = {"sim_step0": similarity.compare(target, current)["total"]} if logging else {}
            optimizer.zero_grad(set_to_none=True)
            total = None
            for t in range(1, config.refinement_steps + 1):
                with record_function("H forward and G synthesis"):
                    current, total = refinement_step(generator, hypernet_ddp, w, sketches, current, total)
                with record_function("L_sim forward"):
                    loss = similarity.compare(target, current)["total"]
                with record_function("backward"):
                    loss.backward()
                record[f"sim_step{t}"] = loss.detach()
            with record_function("optimiser"):
                optimizer.step()
            step += 1

            if logging:
                last_record = {k: float(all_reduce_mean(v, ctx)) for k, v in record.items()}
                logger.log(step=step, **last_record)
                final = last_record[f"sim_step{config.refinement_steps}"]
                progress(status=f"L_sim x0 {last_record['sim_step0']:.3f} -> xT {final:.3f}")
            if config.cadence.sample_due(step) and step < config.steps:
                _refiner_samples(encoder, generator, hypernet, similarity, samples, val_batch, config, run, step,
                                 logger, ctx)
            if config.cadence.checkpoint_due(step):
                loop.save(step=step)
            progress(completed=step)

    loop.save(step=step)
    if ctx.is_main:
        _refiner_samples(encoder, generator, hypernet, similarity, samples, val_batch, config, run, step, logger, ctx)
        save_loss_curve(run.log, run.loss_curve, [f"sim_step{t}" for t in range(config.refinement_steps + 1)])
        save_network(bundle.root, REFINER, hypernet, hyper_config, steps=step,
                     refinement_steps=config.refinement_steps, train_config=dataclasses.asdict(config),
                     similarity=similarity_record, data_fingerprint=dataset_fingerprint(options.data),
                     generator_sha256=bundle.generator_digest,
                     final_losses=last_record, **run_record(paired, REFINER))
        logger.log(event="exported", step=step, bundle=str(bundle.root))
    return loop.result(step, last_record, bundle=bundle.root)


@torch.no_grad()
def _refiner_samples(
    encoder: nn.Module, generator: nn.Module, hypernet: HyperNetwork, similarity: Any,
    samples: tuple[torch.Tensor, torch.Tensor], val_batch: tuple[torch.Tensor, torch.Tensor] | None,
    config: RefinerTrainConfig, run: RunDir, step: int, logger: JsonlLogger, ctx: DistContext,
) -> None:
    """Grid sketch | x_0 | x_T | real on the fixed batch; L_sim of x_0 and x_T on free-hand sketches."""
    if not ctx.is_main:
        return
    hypernet.eval()
    pipeline = Sketch2MedI(generator, encoder, hypernet, config.refinement_steps)
    batches = {"": samples} if val_batch is None else {"": samples, "val_": val_batch}
    for prefix, (sketches, images) in batches.items():
        output = pipeline.run(sketches)
        comparison_grid([sketches, output.x_0, output.image, images], run.samples / f"{prefix}step{step:07d}.png")
        if prefix:
            logger.log(step=step, val_sim_x0=float(similarity(images, output.x_0)["total"]),
                       val_sim_xT=float(similarity(images, output.image)["total"]))
    hypernet.train()
