"""C's retrieval read-out: region grids of a stage, and their choice by leave-one-out on the bank."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from api.cli import app
from generation.bundle import save_network
from generation.bundle import Bundle
from generation.moco import Embedder, EmbedderConfig, Readout
from generation.moco.readout import region_descriptor
from generation.moco.readout_choice import candidate_readouts, leave_one_out_knn_accuracy, select_readout

TINY = EmbedderConfig.for_preset("tiny")


def test_grid_descriptor_is_unit_length_and_its_cosine_is_the_mean_of_the_cells():
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(4, 8, 6, 6, generator=generator) for _ in range(5)]  # stem, stages 1..4
    descriptor = region_descriptor(features, Readout(3, 3))
    assert descriptor.shape == (4, 8 * 9)
    assert torch.allclose(descriptor.norm(dim=1), torch.ones(4), atol=1e-6)
    cells = F.normalize(F.adaptive_avg_pool2d(features[3], 3), dim=1)  # [4, 8, 3, 3]
    per_cell = (cells[0] * cells[1]).sum(dim=0).mean()
    assert torch.allclose(descriptor[0] @ descriptor[1], per_cell, atol=1e-6)
    with pytest.raises(ValueError, match="finer than stage 3"):
        region_descriptor(features, Readout(3, 7))


def test_stage_4_one_cell_is_the_pooled_vector_and_other_readouts_share_the_trunk():
    torch.manual_seed(0)
    embedder = Embedder(TINY)
    images = torch.rand(5, 3, 48, 48) * 2 - 1
    assert torch.allclose(embedder.describe(images), embedder.embed(images), atol=1e-6)
    grid = embedder.with_readout(Readout(2, 2))
    assert grid.trunk is embedder.trunk and grid.config.readout == Readout(2, 2)
    shapes = embedder.stage_shapes()
    described = grid.describe(images, batch_size=2)
    assert described.shape == (5, shapes[2][0] * 4) and described.dtype == torch.float32
    assert torch.allclose(described.norm(dim=1), torch.ones(5), atol=1e-5)
    assert grid.describe(images[:0]).shape == (0, shapes[2][0] * 4)
    assert all(r.grid <= min(shapes[r.stage][1:]) for r in candidate_readouts(shapes))


def test_readout_settings_are_checked():
    assert Readout.parse("3:6") == Readout(3, 6)
    for text in ("3", "a:b", "5:1", "3:0"):
        with pytest.raises(ValueError):
            Readout.parse(text)
    with pytest.raises(ValueError, match="stage"):
        TINY.replace(readout_stage=0)


def test_leave_one_out_leaves_each_item_out_and_selection_prefers_the_separating_readout():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(120) % 3
    unique = torch.randn(120, 50, generator=generator)  # every item its own direction: only itself is close
    assert leave_one_out_knn_accuracy(unique, labels, k=1, temperature=0.1, num_classes=3) < 0.6
    separating = F.one_hot(labels, 3).float() * 4 + torch.randn(120, 3, generator=generator)
    assert leave_one_out_knn_accuracy(separating, labels, k=5, temperature=0.1, num_classes=3) > 0.95

    wide_copy = torch.cat([separating, separating], dim=1)  # the same neighbours in twice the dimensions
    choice = select_readout({Readout(4, 1): unique, Readout(3, 2): wide_copy, Readout(2, 1): separating},
                            [(labels, 3)], k=5, temperature=0.1)
    assert choice.readout == Readout(2, 1)  # ties go to the smaller descriptor
    assert choice.scores[Readout(4, 1)] < 0.6
    record = choice.as_record()
    assert record["stage"] == 2 and set(record["bank_scores"]) == {"4:1", "3:2", "2:1"}
    with pytest.raises(ValueError):
        select_readout({}, [(labels, 3)], k=5, temperature=0.1)


def test_training_chooses_a_readout_on_the_bank_and_the_bundle_serves_it(tiny_phantoms, tmp_path):
    runner = CliRunner()
    bundle = tmp_path / "bundle"
    result = runner.invoke(app, ["train", "embedder", "--data", str(tiny_phantoms), "--preset", "tiny", "--run-dir",
                                 str(tmp_path / "run"), "--max-steps", "2", "--bundle", str(bundle)])
    assert result.exit_code == 0, result.output
    record = json.loads((bundle / "bundle.json").read_text())["networks"]["embedder"]
    embedder = Bundle.open(bundle).load_embedder()
    chosen = Readout(record["readout"]["stage"], record["readout"]["grid"])
    assert embedder.config.readout == chosen
    assert max(record["readout"]["bank_scores"].values()) == pytest.approx(record["readout"]["bank_scores"][f"{chosen.stage}:{chosen.grid}"])
    shapes = embedder.stage_shapes()
    assert embedder.describe(torch.rand(2, 3, 32, 32) * 2 - 1).shape == (2, shapes[chosen.stage][0] * chosen.grid**2)
    if chosen != Readout(4, 1):
        assert "diagnosis/pooled_knn" in record["probe"]


def test_evaluate_embedder_chooses_saves_and_rejects_readouts(tiny_phantoms, tmp_path):
    torch.manual_seed(0)
    bundle = tmp_path / "bundle"
    save_network(bundle, "embedder", Embedder(TINY), TINY)
    runner = CliRunner()
    fixed = runner.invoke(app, ["evaluate-embedder", "--data", str(tiny_phantoms), "--model", str(bundle), "--readout", "3:2",
                                "--report", str(tmp_path / "fixed.json")])
    assert fixed.exit_code == 0, fixed.output
    assert "stage 3, 2x2 grid" in fixed.output and "C pooled" in fixed.output
    assert json.loads((tmp_path / "fixed.json").read_text())["readout"] == {"stage": 3, "grid": 2}
    assert Bundle.open(bundle).load_embedder().config.readout == Readout(4, 1)  # evaluated, not saved

    auto = runner.invoke(app, ["evaluate-embedder", "--data", str(tiny_phantoms), "--model", str(bundle), "--readout", "auto",
                               "--save-readout"])
    assert auto.exit_code == 0, auto.output
    assert "leave-one-out" in auto.output and "saved read-out" in auto.output
    record = json.loads((bundle / "bundle.json").read_text())["networks"]["embedder"]
    assert Bundle.open(bundle).load_embedder().config.readout == Readout(record["readout"]["stage"], record["readout"]["grid"])
    evaluated = record["readout"]["evaluated_on"]
    assert evaluated["bank"] == TINY.probe_bank_size and 0.0 <= evaluated["diagnosis/embedding_knn"] <= 1.0
    low, high = evaluated["diagnosis/margin_interval"]
    assert low <= evaluated["diagnosis/embedding_knn"] - evaluated["diagnosis/pixel_linear"] <= high

    before = (bundle / "bundle.json").read_bytes()
    for bad, message in (("9:1", "read-out stage"), ("x", "STAGE:GRID"), ("4:5", "finer than stage 4")):
        refused = runner.invoke(app, ["evaluate-embedder", "--data", str(tiny_phantoms), "--model", str(bundle),
                                      "--readout", bad, "--save-readout"])
        assert refused.exit_code == 2 and message in refused.output, refused.output
    assert (bundle / "bundle.json").read_bytes() == before


def test_a_checkpoint_from_before_the_readout_fields_resumes(tiny_phantoms, tmp_path):
    runner = CliRunner()
    common = ["train", "embedder", "--data", str(tiny_phantoms), "--preset", "tiny", "--run-dir", str(tmp_path / "run")]
    assert runner.invoke(app, [*common, "--max-steps", "1"]).exit_code == 0
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=False)
    del state["configs"]["embedder"]["readout_stage"], state["configs"]["embedder"]["readout_grid"]  # as written by the previous release
    torch.save(state, checkpoint)
    resumed = runner.invoke(app, [*common, "--max-steps", "2", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(checkpoint, weights_only=False)["step"] == 2
