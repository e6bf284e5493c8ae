"""pix2pix: its losses fall, it beats an untrained copy on the pairs it saw, and a resumed run equals a straight one."""

from __future__ import annotations

import dataclasses

import torch

from generation.bundle import PIX2PIX, Bundle
from generation.data import SketchImagePairs
from generation.metrics import ssim
from generation.paired import PairedInputs
from generation.pix2pix import Pix2PixConfig, Pix2PixTrainConfig, UNetGenerator
from generation.pix2pix.train import train_pix2pix
from generation.training import RunOptions, read_jsonl
from sketch2medi_fixtures import tiny_pairs


def _train(tmp_path, dataset, sketches, name: str, config: Pix2PixTrainConfig, resume: bool = False):
    options = RunOptions(data=dataset, run_dir=tmp_path / f"{name}-run", bundle=tmp_path / f"{name}-bundle",
                         device="cpu", resume=resume, progress=False)
    return train_pix2pix(options, PairedInputs(sketches), Pix2PixConfig.for_preset("tiny"), config)


def test_pix2pix_learns_and_a_resumed_run_equals_a_straight_one(tmp_path) -> None:
    dataset, sketches = tiny_pairs(tmp_path, count=16)
    tiny = Pix2PixTrainConfig.for_preset("tiny")
    config = dataclasses.replace(tiny, steps=60, cadence=dataclasses.replace(tiny.cadence, sample_every=1000))
    result = _train(tmp_path, dataset, sketches, "straight", config)
    assert (result.step, result.steps_this_run, result.bundle) == (60, 60, tmp_path / "straight-bundle")
    records = [r for r in read_jsonl(result.run_dir / "log.jsonl") if "loss_G_l1" in r]
    first, last = records[:5], records[-5:]
    assert sum(r["loss_G_l1"] for r in last) < 0.6 * sum(r["loss_G_l1"] for r in first)

    trained = Bundle.open(tmp_path / "straight-bundle").load(PIX2PIX)
    torch.manual_seed(0)
    untrained = UNetGenerator(Pix2PixConfig.for_preset("tiny")).eval()
    pairs = SketchImagePairs(dataset, sketches, 32)
    sketch_batch = torch.stack([pairs[i][0] for i in range(len(pairs))])
    photos = torch.stack([pairs[i][1] for i in range(len(pairs))])
    with torch.no_grad():
        ours, baseline = trained(sketch_batch), untrained(sketch_batch)
    assert (ours - photos).abs().mean() < 0.7 * (baseline - photos).abs().mean()
    assert ssim(ours, photos).mean() > ssim(baseline, photos).mean() + 0.05

    half = dataclasses.replace(config, steps=30)
    _train(tmp_path, dataset, sketches, "resumed", half)
    assert _train(tmp_path, dataset, sketches, "resumed", config, resume=True).steps_this_run == 30
    resumed = Bundle.open(tmp_path / "resumed-bundle").load(PIX2PIX)
    for (name, a), (_, b) in zip(trained.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
