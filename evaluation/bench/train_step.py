"""What one training step of E or H costs, and where it goes: the real loop, timed and then profiled.

The loops label their parts with `torch.profiler.record_function` (data, E forward, latent D step,
G synthesis, L_sim forward, backward, optimiser; H's per-refinement parts); backward is one part
because autograd runs it as one pass. Step seconds come from an unprofiled run (the JSONL log's
CPU and wall clocks between its first and last logged step, so start-up and the export are left
out; on a shared core the CPU seconds are the step's cost, the wall seconds what it waited); the parts
from a resumed run of a few more steps under the profiler. The loop exports into its bundle, so
it runs on a copy.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from generation.configs import Cadence
from generation.losses import SimilarityConfig

LOOPS = ("encoder", "refiner")
NEVER = 10**9  # a cadence that never draws samples or checkpoints within a measured run
BUNDLE_FILES = ("bundle.json", "generator.safetensors", "embedder.safetensors", "encoder.safetensors")


TRAIN_PAIRS = 64  # phantoms the bench trains on: a few batches are enough to time a step


def train_pairs(work: Path, side: int, seed: int) -> tuple[Path, Path]:
    """Phantoms at the bundle's side and their contour sketches (rendered once into `work`)."""
    from phantoms.dataset import generate_dataset
    from phantoms.preview import SketchStyle, write_sketch_folder

    data = work / f"train-{TRAIN_PAIRS}-{side}px-seed{seed}"
    sketches = work / f"train-{TRAIN_PAIRS}-{side}px-seed{seed}-contour"
    if not (data / "annotations.json").exists():
        generate_dataset(data, TRAIN_PAIRS, side, seed, workers=1)
    if not sketches.is_dir() or len(list(sketches.iterdir())) < TRAIN_PAIRS:
        write_sketch_folder(data, sketches, SketchStyle.contour, seed=seed)
    return data, sketches


def _bundle_copy(bundle: Path, into: Path) -> Path:
    """The networks a loop reads (G, C, E), copied so that its export leaves `bundle` untouched."""
    copy = into / "bundle"
    copy.mkdir(parents=True)
    for name in BUNDLE_FILES:
        if (bundle / name).exists():
            shutil.copy2(bundle / name, copy / name)
    return copy


def _logged_times(log: Path) -> list[tuple[int, float, float]]:
    """(step, wall seconds, CPU seconds since the run began) of every logged training step."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [(row["step"], row["time_s"], row["cpu_s"]) for row in rows if "step" in row and "event" not in row
            and not any(key.startswith("val_") for key in row)]


def _run(loop: str, options: Any, paired: Any, preset: str, similarity: SimilarityConfig, steps: int,
         log_every: int, batch_size: int | None) -> int:
    """`steps` steps of the loop (in all, if resumed) with the preset's networks, no samples or checkpoints
    between; returns the batch size it trained with."""
    from generation.bundle import GENERATOR, Bundle

    cadence = Cadence(log_every=log_every, sample_every=NEVER, checkpoint_every=NEVER)
    overrides: dict[str, Any] = {"steps": steps, "cadence": cadence}
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    if loop == "encoder":
        from generation.e4e.config import EncoderConfig, EncoderTrainConfig
        from generation.e4e.train import train_encoder

        w_dim = Bundle.open(options.bundle).config(GENERATOR)["w_dim"]
        encoder_config = dataclasses.replace(EncoderTrainConfig.for_preset(preset), **overrides)
        train_encoder(options, paired, EncoderConfig.for_preset(preset, w_dim), similarity, encoder_config)
        return encoder_config.batch_size
    from generation.hyperstyle.config import HyperNetworkConfig, RefinerTrainConfig
    from generation.hyperstyle.train import train_refiner

    refiner_config = dataclasses.replace(RefinerTrainConfig.for_preset(preset), **overrides)
    train_refiner(options, paired, HyperNetworkConfig.for_preset(preset), similarity, refiner_config)
    return refiner_config.batch_size


def profile_train_step(loop: str, bundle: Path, data: Path, sketches: Path, steps: int = 20, profiled: int = 5,
                       preset: str = "small", similarity: SimilarityConfig | None = None,
                       batch_size: int | None = None, log_every: int = 10, seed: int = 0,
                       device: str = "cpu") -> dict[str, Any]:
    """Seconds per step of `loop` (encoder or refiner) over `steps` steps after `log_every` warm-up
    steps, and milliseconds per step of each labelled part over `profiled` further steps.

    `steps` must be a multiple of `log_every` (the log's clock times whole logging intervals).
    """
    from generation.paired import PairedInputs
    from generation.training import RunOptions

    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
    if steps < log_every or steps % log_every:
        raise ValueError(f"steps ({steps}) must be a positive multiple of log_every ({log_every})")
    similarity = similarity or SimilarityConfig.for_preset(preset)
    with tempfile.TemporaryDirectory(prefix="s2m-train-step-") as folder:
        root = Path(folder)
        options = RunOptions(data=data, run_dir=root / "run", bundle=_bundle_copy(bundle, root), device=device,
                             seed=seed, progress=False)
        paired = PairedInputs(sketches=sketches)
        batch = _run(loop, options, paired, preset, similarity, log_every + steps, log_every, batch_size)
        times = _logged_times(options.run_dir / "log.jsonl")
        (first_step, first_wall, first_cpu), (last_step, last_wall, last_cpu) = times[0], times[-1]
        timed = last_step - first_step
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            _run(loop, dataclasses.replace(options, resume=True), paired, preset, similarity,
                 log_every + steps + profiled, log_every, batch_size)
    labels = _label_names(loop)
    parts = {event.key: event.cpu_time_total / 1000 / profiled for event in profile.key_averages() if event.key in labels}
    return {"loop": loop, "preset": preset, "batch_size": batch, "similarity": dataclasses.asdict(similarity),
            "step_cpu_s": (last_cpu - first_cpu) / timed, "step_wall_s": (last_wall - first_wall) / timed,
            "timed_steps": timed, "profiled_steps": profiled,
            "parts_ms": {label: parts.get(label, 0.0) for label in labels}}


def _label_names(loop: str) -> tuple[str, ...]:
    """The record_function labels of a loop's step, in the order it runs them."""
    if loop == "encoder":
        return ("data", "E forward", "latent D step", "G synthesis", "L_sim forward", "backward", "optimiser")
    return ("data", "E and x_0", "H forward and G synthesis", "L_sim forward", "backward", "optimiser")


def train_step_figures(bundle: Path, work: Path, side: int, steps: int, seed: int, device: str) -> dict[str, Any]:
    """`s2m bench`'s train section: E's and H's step on the bundle's own preset, over `steps` timed steps."""
    from generation.bundle import ENCODER, Bundle

    data, sketches = train_pairs(work, side, seed)
    preset = Bundle.open(bundle).config(ENCODER)["preset"]  # the preset the shipped E (and H) were trained at
    log_every = min(10, steps)
    timed = max(log_every, steps - steps % log_every)
    return {loop: profile_train_step(loop, bundle, data, sketches, steps=timed, profiled=min(5, steps), preset=preset,
                                     log_every=log_every, seed=seed, device=device) for loop in LOOPS}
