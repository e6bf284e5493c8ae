"""`s2m eval signs` (issue 38): the sign edits' quality on held-out w, with every missed goal flagged."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from api.cli import app
from evaluation.sign_edits import judge
from generation.bundle import BUNDLE_INFO, Bundle, save_network
from generation.sign_training import SignTrainConfig, train_signs
from generation.signs import SIGNS_ENTRY, SIGNS_FILE, SignDirections

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "generation"))
from sketch2medi_fixtures import tiny_bundle  # noqa: E402


def test_a_sign_whose_score_dips_or_that_drags_others_or_the_anatomy_is_flagged() -> None:
    strengths = [0.0, 0.5, 1.0]
    steady = judge("exudate", strengths, [-2.0, 0.0, 2.0], [{"erythema": 0.1}, {"erythema": 0.2}, {"erythema": 0.3}],
                   [{"tongue": 1.0}, {"tongue": 0.97}, {"tongue": 0.95}], (0, 1))
    assert steady["flags"] == [] and steady["layers"] == [0, 1]
    dipping = judge("exudate", strengths, [-2.0, 1.0, 0.5], [{"erythema": 0.0}] * 3, [{"tongue": 1.0}] * 3, None)
    assert dipping["flags"] == ["monotone"], "a score that falls back is not monotone"
    dragging = judge("exudate", strengths, [0.0, 1.0, 2.0], [{"erythema": 0.0}, {"erythema": -0.3}, {"erythema": 0.4}],
                     [{"tongue": 1.0}, {"tongue": 0.95}, {"tongue": 0.85}], None)
    assert dragging["flags"] == ["other_regions_dice", "other_signs_below_quarter"]
    assert dragging["largest_other_move_ratio_by_strength"] == [0.3, 0.2], "|move| / rise at each strength"
    flat = judge("exudate", strengths, [1.0, 1.0, 1.0], [{"erythema": 0.0}] * 3, [{"tongue": 1.0}] * 3, None)
    assert set(flat["flags"]) == {"monotone", "other_signs_below_quarter"} and math.isinf(
        flat["largest_other_move_ratio_by_strength"][0])
    # said absent (negative strengths): the score must fall, and the other signs count against that fall
    both = [-1.0, -0.5, 0.0, 0.5, 1.0]
    absent = judge("exudate", both, [-4.0, -3.0, -2.0, 0.0, 2.0], [{"erythema": -0.2}, {"erythema": -0.1}, {"erythema": 0.0},
                                                                   {"erythema": 0.1}, {"erythema": 0.2}], [{"tongue": 1.0}] * 5, None)
    assert absent["flags"] == [] and absent["largest_other_move_ratio_by_strength"] == [0.1, 0.1, 0.05, 0.05]
    assert absent["smallest_other_dice_by_strength"] == [1.0] * 4, "strength 0 is the reference, not a row"
    wrong_way = judge("exudate", both, [-1.0, -1.5, -2.0, 0.0, 2.0], [{"erythema": 0.0}] * 5, [{"tongue": 1.0}] * 5, None)
    assert set(wrong_way["flags"]) == {"monotone", "other_signs_below_quarter"}, "absent that raises the sign"
    assert math.isinf(wrong_way["largest_other_move_ratio_by_strength"][0])


@pytest.fixture(scope="module")
def tiny_signs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle (random G, C and S) with sign directions from 60 labelled 32-px phantoms."""
    from generation.solov2.model import SOLOv2
    from generation.solov2.config import SynthesizerConfig
    from phantoms.dataset import generate_dataset

    root = tmp_path_factory.mktemp("sign-edits")
    bundle = tiny_bundle(root / "bundle")
    config = SynthesizerConfig.for_preset("tiny")
    torch.manual_seed(0)
    save_network(bundle, "synthesizer", SOLOv2(config).eval(), config)
    archive = Path(generate_dataset(root / "archive", count=60, size=32, seed=4, workers=1))
    train = SignTrainConfig(probe_images=60, w_samples=100, check_samples=8, validation_samples=8, w_step_sd=1.0)
    train_signs(Bundle.open(bundle), archive, train).save(bundle)
    return bundle


def test_s2m_eval_signs_writes_the_report_the_figure_and_the_page(tiny_signs: Path, tmp_path: Path) -> None:
    directions = SignDirections.from_bundle(Bundle.open(tiny_signs))
    assert directions is not None and set(directions.probes()) == set(directions.names), "the classifiers are stored"
    entry = json.loads((tiny_signs / BUNDLE_INFO).read_text())[SIGNS_ENTRY]
    assert set(entry["layers"]) == set(directions.names) and entry["layer_choice"]["exudate"]["chosen"]
    assert np.array(entry["mixing"]["response"]).shape == (len(directions.names),) * 2, "every edit read by every classifier"
    assert set(entry["mixing"]["signs"]) == set(directions.names)
    report, figure, page = tmp_path / "r.json", tmp_path / "edits.png", tmp_path / "docs" / "signs.md"
    result = CliRunner().invoke(app, ["eval", "signs", "--model", str(tiny_signs), "--report", str(report),
                                      "--figure", str(figure), "--page", str(page), "--samples", "4",
                                      "--fid-samples", "0", "--note", "test box"])
    assert result.exit_code == 0, result.output
    measured = json.loads(report.read_text())
    assert measured["strengths"] == [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0], "absent, then present"
    row = measured["signs"]["exudate"]
    assert len(row["score_by_strength"]) == 9 and set(row["goals"]) == {
        "monotone", "other_regions_dice", "other_signs_below_quarter"}
    assert ("MISSED" in result.output) == any(one["flags"] for one in measured["signs"].values())
    side = 2 * 32 + 2  # 2x upscaled tiles and their padding
    assert Image.open(figure).size == (9 * side + 2, len(directions.names) * side + 2), "rows signs, columns strengths"
    text = page.read_text()
    assert "| exudate |" in text and "test box" in text and "../edits.png" in text


def test_s2m_eval_signs_refuses_directions_stored_without_their_classifiers(tiny_signs: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    copy = Path(shutil.copytree(tiny_signs, tmp_path / "old"))
    tensors = load_file(str(copy / SIGNS_FILE))
    save_file({"w": tensors["w"], "appearance": tensors["appearance"]}, str(copy / SIGNS_FILE))
    result = CliRunner().invoke(app, ["eval", "signs", "--model", str(copy), "--report", str(tmp_path / "r.json"),
                                      "--figure", str(tmp_path / "f.png"), "--fid-samples", "0"])
    assert result.exit_code == 2 and "without their classifiers" in result.output
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "f.png").exists()
