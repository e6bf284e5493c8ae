"""StyleGAN2 training on 32 px phantoms: it learns, resumes bit-identically, runs under torchrun (gloo)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from api.cli import app
from generation.bundle import GENERATOR, Bundle
from generation.configs import Cadence
from generation.metrics import RandomConvFeatures
from generation.stylegan2 import DiscriminatorConfig, GanTrainConfig, Generator, GeneratorConfig
from generation.stylegan2.evaluate import generator_frechet_distance, load_real_images
from generation.stylegan2.train import train_generator
from generation.training import RunOptions, load_checkpoint, read_jsonl

PHANTOMS = 64
LEARNING_STEPS = 30
G_CONFIG = GeneratorConfig.for_preset("tiny")
D_CONFIG = DiscriminatorConfig.for_preset("tiny")
QUIET = {"cadence": Cadence(checkpoint_every=10**6, sample_every=10**6)}


@pytest.fixture(scope="session")
def phantoms32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phantoms.dataset import generate_dataset

    return Path(generate_dataset(tmp_path_factory.mktemp("gan") / "phantoms", count=PHANTOMS, size=32, seed=0))


@pytest.fixture(scope="module")
def trained_bundle(phantoms32: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gan_run")
    config = dataclasses.replace(GanTrainConfig.for_preset("tiny"), steps=LEARNING_STEPS, **QUIET)
    options = RunOptions(data=phantoms32, run_dir=root / "run", bundle=root / "bundle", progress=False)
    train_generator(options, G_CONFIG, D_CONFIG, config)
    return root


def test_training_moves_the_frechet_distance_to_held_in_phantoms_down(trained_bundle: Path, phantoms32: Path) -> None:
    reals = load_real_images(phantoms32, G_CONFIG.resolution, PHANTOMS)
    features = RandomConvFeatures()
    torch.manual_seed(0)  # the same initial G the run started from (seed 0)
    before = generator_frechet_distance(Generator(G_CONFIG).eval(), reals, features, seed=1)
    after = generator_frechet_distance(Bundle.open(trained_bundle / "bundle").load(GENERATOR), reals, features, seed=1)
    assert after < 0.4 * before


def test_run_writes_log_samples_loss_curve_and_a_bundle(trained_bundle: Path) -> None:
    run = trained_bundle / "run"
    steps = [r["step"] for r in read_jsonl(run / "log.jsonl") if "step" in r]
    assert steps[-1] == LEARNING_STEPS and all(r > 0 for r in steps)
    assert (run / "samples" / f"step-{LEARNING_STEPS:07d}.png").exists() and (run / "loss_curve.png").exists()
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert checkpoint["state"]["images_seen"] == LEARNING_STEPS * GanTrainConfig.for_preset("tiny").batch_size
    generator = Bundle.open(trained_bundle / "bundle").load(GENERATOR)
    # The exported mean w was estimated over fresh z, not left at the training EMA.
    assert not torch.equal(generator.mapping.w_avg, checkpoint["modules"]["G_ema"]["mapping.w_avg"])


def test_checkpoint_then_resume_gives_bit_identical_next_steps(phantoms32: Path, tmp_path: Path) -> None:
    # Every branch on: lazy R1 and path length every 2 steps, augmentation, mirroring, style mixing.
    config = dataclasses.replace(GanTrainConfig.for_preset("tiny"), r1_interval=2, pl_weight=2.0, pl_interval=2,
                                 augment="fixed", augment_p=0.5, mirror=True, **QUIET)
    split = RunOptions(data=phantoms32, run_dir=tmp_path / "split", progress=False)
    train_generator(split, G_CONFIG, D_CONFIG, dataclasses.replace(config, steps=3))
    train_generator(dataclasses.replace(split, resume=True), G_CONFIG, D_CONFIG, dataclasses.replace(config, steps=6))
    straight = dataclasses.replace(split, run_dir=tmp_path / "straight")
    train_generator(straight, G_CONFIG, D_CONFIG, dataclasses.replace(config, steps=6))
    resumed, direct = load_checkpoint(split.run_dir / "checkpoint.pt"), load_checkpoint(straight.run_dir / "checkpoint.pt")
    for network in ("G", "D", "G_ema"):
        left, right = resumed["modules"][network], direct["modules"][network]
        assert all(torch.equal(left[key], right[key]) for key in left), network
    left, right = resumed["optimizers"]["G"]["state"][0], direct["optimizers"]["G"]["state"][0]
    assert all(torch.equal(left[key], right[key]) for key in left)
    assert resumed["state"] == direct["state"]
    with pytest.raises(ValueError, match="another GeneratorConfig"):
        train_generator(dataclasses.replace(split, resume=True), dataclasses.replace(G_CONFIG, w_dim=16),
                        D_CONFIG, dataclasses.replace(config, steps=7))


def test_a_run_resumes_only_on_the_dataset_it_trained_on(phantoms32: Path, tmp_path: Path) -> None:
    # A run continued from a fresh clone trains on a regenerated archive: it must be the same one.
    config = dataclasses.replace(GanTrainConfig.for_preset("tiny"), steps=1, **QUIET)
    options = RunOptions(data=phantoms32, run_dir=tmp_path / "run", progress=False)
    train_generator(options, G_CONFIG, D_CONFIG, config)
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    for path in sorted((phantoms32 / "images").glob("*.png"))[:20]:
        (other / "images" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="not the dataset this run trained on"):
        train_generator(dataclasses.replace(options, data=other, resume=True), G_CONFIG, D_CONFIG,
                        dataclasses.replace(config, steps=2))
    assert load_checkpoint(options.run_dir / "checkpoint.pt")["state"]["step"] == 1


def test_two_process_gloo_run_completes(phantoms32: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29617",
               "-m", "api.cli", "train", "generator", "--data", str(phantoms32),
               "--run-dir", str(run_dir), "--preset", "tiny", "--steps", "4", "--no-progress", "--pl-weight", "2",
               "--r1-gamma", "1", "--checkpoint-every", "4"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["world_size"] == 2 and checkpoint["state"]["step"] == 4
    assert len(checkpoint["rng"]) == 2 and not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])
    assert [r["step"] for r in read_jsonl(run_dir / "log.jsonl") if "step" in r] == [4]


def test_generate_random_writes_a_grid_from_the_bundle(trained_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["generate-random", "--model", str(trained_bundle / "bundle"), "--count", "4",
                                      "-o", str(out), "--truncation", "0.7"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as grid:
        assert grid.size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 2 x 2 tiles, 2 px padding


def test_evaluate_generator_names_its_features_and_records_the_distance(trained_bundle: Path, phantoms32: Path) -> None:
    bundle = trained_bundle / "bundle"
    result = CliRunner().invoke(app, ["evaluate-generator", "--model", str(bundle), "--data", str(phantoms32),
                                      "--count", "16"])
    assert result.exit_code == 0, result.output
    assert "random-conv" in result.output
    refused = CliRunner().invoke(app, ["evaluate-generator", "--model", str(bundle), "--data", str(phantoms32),
                                       "--count", "16", "--extractor", "moco-embedder"])
    assert refused.exit_code == 2 and "has no 'embedder' network" in refused.output
    metrics = json.loads((bundle / "bundle.json").read_text())["metrics"]
    assert metrics["generator_frechet_random_conv_16"] > 0


def test_bad_inputs_give_a_clear_error_and_write_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    runner = CliRunner()
    result = runner.invoke(app, ["train", "generator", "--data", str(empty), "--run-dir", str(tmp_path / "run"),
                                 "--preset", "tiny", "--steps", "2", "--no-progress"])
    assert result.exit_code == 2 and "no images" in result.output
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    result = runner.invoke(app, ["generate-random", "--model", str(tmp_path), "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 2 and not (tmp_path / "g.png").exists()
    result = runner.invoke(app, ["train", "generator", "--data", str(empty), "--run-dir", str(tmp_path / "run"),
                                 "--preset", "huge", "--steps", "2"])
    assert result.exit_code == 2 and "unknown preset" in result.output


def test_a_spent_time_budget_stops_after_one_step_with_a_checkpoint_and_an_export(phantoms32: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(GanTrainConfig.for_preset("tiny"), steps=50, **QUIET)
    options = RunOptions(data=phantoms32, run_dir=tmp_path / "run", bundle=tmp_path / "bundle", max_minutes=0.0,
                         limit=16, progress=False)
    result = train_generator(options, G_CONFIG, D_CONFIG, config)
    assert (result.step, result.steps_this_run, result.stopped_early) == (1, 1, True)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["state"]["step"] == 1
    assert Bundle.open(tmp_path / "bundle").entry(GENERATOR)["steps"] == 1
    assert Bundle.open(tmp_path / "bundle").info["preset"] == "tiny"


def test_a_finished_run_resumed_for_no_further_step_exports_its_g_ema_unchanged(phantoms32: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(GanTrainConfig.for_preset("tiny"), steps=2, **QUIET)
    train_generator(RunOptions(data=phantoms32, run_dir=tmp_path / "run", limit=16, progress=False), G_CONFIG, D_CONFIG, config)
    before = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    result = train_generator(RunOptions(data=phantoms32, run_dir=tmp_path / "run", bundle=tmp_path / "bundle", limit=16,
                                        resume=True, progress=False), G_CONFIG, D_CONFIG, config)
    assert (result.step, result.steps_this_run) == (2, 0)
    exported = Bundle.open(tmp_path / "bundle").load(GENERATOR).state_dict()
    trained = before["modules"]["G_ema"]
    assert all(torch.equal(exported[name], trained[name]) for name in trained if name != "mapping.w_avg")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["state"] == before["state"]  # nothing trained
