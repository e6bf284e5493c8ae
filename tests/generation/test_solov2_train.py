"""S learns on phantoms; the train and synthesize commands write what they promise and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from generation.data import image_to_tensor
from generation.solov2.config import SynthesizerConfig
from generation.solov2.data import CocoInstanceDataset, collate_instances
from generation.solov2.losses import solov2_loss
from generation.solov2.model import SOLOv2
from generation.solov2.targets import assign_targets

TINY = SynthesizerConfig.for_preset("tiny")
STEPS = 24


@pytest.fixture(scope="module")
def phantoms_dir(tmp_path_factory):
    from phantoms.dataset import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("phantoms") / "seg", count=6, size=32, seed=5)


@pytest.fixture(scope="module")
def trained(phantoms_dir):
    """A tiny S fitted for a couple of dozen steps on six phantoms, and its loss history."""
    torch.manual_seed(0)
    dataset = CocoInstanceDataset(phantoms_dir, TINY.resolution, TINY.category_ids)
    images, annotations = collate_instances([dataset[i] for i in range(len(dataset))])
    targets = [assign_targets(labels, masks, TINY) for labels, masks in annotations]
    model = SOLOv2(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(STEPS):
        losses = solov2_loss(*model(images), targets, TINY)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return model.eval(), dataset, history


def test_losses_are_finite_and_fall(trained) -> None:
    _, _, history = trained
    assert all(np.isfinite(h["loss"]) for h in history)
    first, last = np.mean([h["loss"] for h in history[:5]]), np.mean([h["loss"] for h in history[-5:]])
    assert last < 0.5 * first
    assert np.mean([h["loss_mask"] for h in history[-5:]]) < np.mean([h["loss_mask"] for h in history[:5]])


def test_synthesized_sketch_equals_contours_of_the_predicted_masks(trained) -> None:
    from formats.contours import contour_sketch_from_masks

    model, dataset, _ = trained
    image, _ = dataset.reference(0)
    candidates = model.predict(image_to_tensor(image)[None], score_threshold=0.0)[0]
    assert len(candidates) >= 2, "a fitted S must find instances on a training image"
    threshold = float(np.median([i.score for i in candidates]))  # some masks drawn, some not
    kept = np.stack([i.mask for i in candidates if i.score >= threshold])
    assert np.array_equal(model.synthesize_sketch(image, threshold), contour_sketch_from_masks(kept))


def test_train_command_validates_checkpoints_resumes_and_saves_a_bundle(phantoms_dir, tmp_path) -> None:
    from api.cli import app

    run, bundle = tmp_path / "run", tmp_path / "bundle"
    common = ["train", "synthesizer", "--data", str(phantoms_dir), "--preset", "tiny", "--run-dir", str(run),
              "--batch-size", "2", "--device", "cpu"]
    first = CliRunner().invoke(app, [*common, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, [*common, "--epochs", "2", "--resume", "--bundle", str(bundle)])
    assert second.exit_code == 0, second.output
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r.get("event") == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[1]["step"] == 2 * epochs[0]["step"]  # resumed, not restarted
    assert {"val_dice_mean", "images_per_s"} <= set(epochs[1])
    assert (run / "samples" / "overlay_epoch002.png").exists() and (run / "checkpoint.pt").exists()
    info = json.loads((bundle / "bundle.json").read_text())["networks"]["synthesizer"]
    assert info["steps"] == epochs[1]["step"] and "val_dice" in info["metrics"]
    # the one result line of every train command: how far, this start's share, where it wrote
    steps = epochs[1]["step"]
    assert f"trained to step {steps} ({steps // 2} steps in" in second.output and "2 epochs; val DICE:" in second.output
    assert f"saved into {bundle}" in second.output and "saved into" not in first.output



def test_synthesize_command_writes_one_contour_sketch_per_image(trained, phantoms_dir, tmp_path) -> None:
    from PIL import Image

    from api.cli import app
    from generation.solov2.train import save_synthesizer
    from formats.contours import contour_sketch_from_masks

    model, dataset, _ = trained
    save_synthesizer(tmp_path / "bundle", model, steps=STEPS)
    out = tmp_path / "sketches"
    result = CliRunner().invoke(app, ["sketches", "synthesize", "--model", str(tmp_path / "bundle"), "--data",
                                      str(phantoms_dir), "--out", str(out), "--threshold", "0.0", "--batch-size", "4",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (phantoms_dir / "images").iterdir())
    assert sorted(p.name for p in out.glob("*.png")) == names  # the fitted S finds instances on every image
    image, _ = dataset.reference(0)
    predicted = [i.mask for i in model.predict(image_to_tensor(image)[None], score_threshold=0.0)[0]]
    written = np.asarray(Image.open(out / names[0]))
    assert np.array_equal(written, contour_sketch_from_masks(np.stack(predicted)))


def test_train_command_rejects_a_folder_without_annotations(tmp_path) -> None:
    from api.cli import app

    result = CliRunner().invoke(app, ["train", "synthesizer", "--data", str(tmp_path), "--preset", "tiny",
                                      "--run-dir", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 2 and "annotations" in result.output
    assert not (tmp_path / "run").exists()
