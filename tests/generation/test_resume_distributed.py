"""The one training-run protocol under a 2-process gloo run: for each of the five loops, a run
stopped half way and resumed ends with the same weights, optimiser state and per-process random
streams as the run that went straight through, and the two processes draw different numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sketch2medi_fixtures import tiny_bundle

from api.viewer.orthanc import free_port
from generation.bundle import ENCODER, GENERATOR, Bundle, save_network
from generation.e4e import Encoder, EncoderConfig
from generation.training import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PHANTOMS = 24
PROCESSES = 2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """24 phantoms at 32 px, their contour sketches, and a bundle with random tiny G, C and E."""
    from phantoms.dataset import generate_dataset
    from phantoms.preview import SketchStyle, write_sketch_folder

    root = tmp_path_factory.mktemp("resume")
    data = generate_dataset(root / "phantoms", count=PHANTOMS, size=32, seed=5)
    sketches = root / "sketches"
    write_sketch_folder(data, sketches, SketchStyle.contour, seed=5)
    bundle = tiny_bundle(root / "bundle")
    generator = Bundle.open(bundle).load(GENERATOR)
    torch.manual_seed(3)
    encoder = Encoder(EncoderConfig.for_preset("tiny", w_dim=generator.config.w_dim))
    encoder.set_latent_average(generator.mapping.w_avg)
    save_network(bundle, ENCODER, encoder, encoder.config)
    return {"data": data, "sketches": sketches, "bundle": bundle}


# Per loop: the arguments of both runs, and how the first half and the whole run say how far to go.
LOOPS = {
    "generator": (["--data", "{data}", "--no-progress", "--checkpoint-every", "2"], ["--steps", "2"], ["--steps", "4"]),
    "synthesizer": (["--data", "{data}"], ["--epochs", "1"], ["--epochs", "2"]),
    "embedder": (["--data", "{data}", "--batch-size", "4", "--epochs", "2", "--label-columns", "diagnosis"],
                 ["--max-steps", "2"], ["--max-steps", "4"]),
    "encoder": (["--bundle", "{bundle}", "--data", "{data}", "--sketches", "{sketches}"], ["--steps", "2"], ["--steps", "4"]),
    "refiner": (["--bundle", "{bundle}", "--data", "{data}", "--sketches", "{sketches}"], ["--steps", "2"], ["--steps", "4"]),
}


def _train(network: str, run_dir: Path, inputs: dict[str, Path], extra: list[str]) -> None:
    common, _, _ = LOOPS[network]
    arguments = [a.format(**{k: str(v) for k, v in inputs.items()}) for a in common]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(PROCESSES),
               "--master_port", str(free_port()), "-m", "api.cli", "train", network, *arguments,
               "--preset", "tiny", "--run-dir", str(run_dir), "--device", "cpu", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _same_rng(left: dict, right: dict) -> bool:
    return (torch.equal(left["torch"], right["torch"]) and left["python"] == right["python"]
            and all(torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
                    for a, b in zip(left["numpy"], right["numpy"])))


def _same_tensors(left, right) -> bool:
    if isinstance(left, torch.Tensor):
        return torch.equal(left, right)
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same_tensors(left[k], right[k]) for k in left)
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(_same_tensors(a, b) for a, b in zip(left, right))
    return left == right


@pytest.mark.slow  # two torchrun launches per loop: about a minute each on 2 cores
@pytest.mark.parametrize("network", LOOPS)
def test_a_resumed_two_process_run_matches_the_uninterrupted_one(network, inputs, tmp_path):
    _, first_half, whole = LOOPS[network]
    runs = {}
    for name, legs in (("straight", [whole]), ("resumed", [first_half, [*whole, "--resume"]])):
        own_inputs = {**inputs, "bundle": tmp_path / f"{name}-bundle"}
        shutil.copytree(inputs["bundle"], own_inputs["bundle"])  # E and H write into their bundle
        for leg in legs:
            _train(network, tmp_path / name, own_inputs, leg)
        runs[name] = load_checkpoint(tmp_path / name / "checkpoint.pt")
    straight, resumed = runs["straight"], runs["resumed"]
    assert straight["world_size"] == resumed["world_size"] == PROCESSES
    assert not _same_rng(resumed["rng"][0], resumed["rng"][1]), "the two processes must draw different numbers"
    for rank in range(PROCESSES):
        assert _same_rng(resumed["rng"][rank], straight["rng"][rank]), f"process {rank} lost its random stream"
    for name in straight["modules"]:
        assert _same_tensors(resumed["modules"][name], straight["modules"][name]), f"{network}: {name} weights differ"
    assert _same_tensors(resumed["optimizers"], straight["optimizers"])
