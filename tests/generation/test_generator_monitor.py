"""Snapshot checks of a G run: the sign probes, the exudate colour rule, FID and `s2m train monitor`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from generation.configs import Cadence
from generation.moco import Embedder, EmbedderConfig
from generation.stylegan2 import DiscriminatorConfig, GanTrainConfig, GeneratorConfig
from generation.stylegan2.monitor import LinearProbe, MonitorConfig, auc, fit_sign_reader
from generation.stylegan2.train import train_generator
from generation.training import RunOptions, read_jsonl
from sketch2medi_fixtures import tiny_bundle


@pytest.fixture(scope="module")
def phantoms64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phantoms.dataset import generate_dataset

    return Path(generate_dataset(tmp_path_factory.mktemp("monitor") / "archive", count=240, size=64, seed=3))


def test_auc_is_the_share_of_positive_negative_pairs_ranked_right_with_ties_halved() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    labels = rng.random(60) < 0.4
    pairs = [(p, n) for p in scores[labels] for n in scores[~labels]]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auc(scores, labels) == pytest.approx(expected)


def test_a_linear_probe_learns_a_separable_sign_and_not_a_shuffled_one() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(400, 50, generator=generator)
    labels = features[:, 3] + 0.5 * features[:, 7] > 0.3
    probe = LinearProbe.fit(features[:300], labels[:300], weight_decay=1e-3, iterations=100)
    assert auc(probe.logits(features[300:]).numpy(), labels[300:].numpy()) > 0.97
    shuffled = labels[torch.randperm(400, generator=generator)]
    chance = LinearProbe.fit(features[:300], shuffled[:300], weight_decay=1e-3, iterations=100)
    assert auc(chance.logits(features[300:]).numpy(), shuffled[300:].numpy()) < 0.7


def test_the_colour_rule_finds_the_archives_white_plaques(phantoms64: Path) -> None:
    config = MonitorConfig(probe_images=240, probe_holdout=0.5)
    reader = fit_sign_reader(Embedder(EmbedderConfig.for_preset("tiny")).eval(), phantoms64, config)
    colour = reader.reference["exudate_colour"]
    # a pixel rule with no network: most exudate cases flagged, few others (chance would be ~0.5 each)
    assert colour["sensitivity"] > 0.75 and colour["specificity"] > 0.8, colour
    assert set(reader.probes) >= {"exudate", "erythema", "tonsils_enlarged"}


def test_monitor_appends_a_snapshot_that_status_then_reports(tmp_path: Path) -> None:
    from phantoms.dataset import generate_dataset

    archive = Path(generate_dataset(tmp_path / "archive", count=60, size=32, seed=4))
    heldout = Path(generate_dataset(tmp_path / "heldout", count=16, size=32, seed=6))
    run = tmp_path / "run"
    config = dataclasses.replace(GanTrainConfig.for_preset("tiny"), steps=2,
                                 cadence=Cadence(checkpoint_every=2, sample_every=10**6))
    train_generator(RunOptions(data=archive, run_dir=run, progress=False), GeneratorConfig.for_preset("tiny"),
                    DiscriminatorConfig.for_preset("tiny"), config)
    bundle = tiny_bundle(tmp_path / "bundle")
    command = ["train", "monitor", str(run), "--model", str(bundle), "--heldout", str(heldout), "--archive", str(archive),
               "--fid-images", "16", "--probe-images", "60"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    (snapshot,) = read_jsonl(run / "evals.jsonl")
    assert snapshot["step"] == 2 and snapshot["fid"] > 0
    assert 0.0 <= snapshot["sign_shares"]["exudate_colour"] <= 1.0
    assert (run / "cache" / "monitor-reference.pt").is_file()
    again = CliRunner().invoke(app, command)  # from the cached references: the same G gives the same FID
    assert again.exit_code == 0, again.output
    assert read_jsonl(run / "evals.jsonl")[1]["fid"] == pytest.approx(snapshot["fid"], rel=1e-5)
    status = json.loads(CliRunner().invoke(app, ["train", "status", str(run), "--json"]).output)
    assert status["step"] == 2 and status["evaluations"][-1]["fid"] == pytest.approx(snapshot["fid"])
    refused = CliRunner().invoke(app, ["train", "monitor", str(tmp_path / "nowhere"), "--model", str(bundle),
                                       "--heldout", str(heldout), "--archive", str(archive)])
    assert refused.exit_code == 2 and "checkpoint" in refused.output
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "checkpoint.pt").write_bytes(b"\x00" * 5000)
    corrupt = CliRunner().invoke(app, ["train", "monitor", str(tmp_path / "corrupt"), "--model", str(bundle),
                                       "--heldout", str(heldout), "--archive", str(archive)])
    assert corrupt.exit_code == 2 and "not a readable checkpoint" in corrupt.output
