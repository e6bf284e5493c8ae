"""Sign directions (issue 38): learned from a labelled archive, stored beside the networks, checked on use."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from generation.bundle import BUNDLE_INFO, Bundle
from generation.sign_training import SignTrainConfig, boundary_normal, orthonormalise, train_signs
from generation.signs import (ABSENT, CHOSEN, PRESENT, SIGNS_ENTRY, SignDirections, SignError, check_strengths, parse_sign_items,
                              require_signs)
from sketch2medi_fixtures import tiny_bundle

CONFIG = SignTrainConfig(probe_images=120, w_samples=300, check_samples=16, w_step_sd=1.0)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phantoms.dataset import generate_dataset

    return Path(generate_dataset(tmp_path_factory.mktemp("signs") / "archive", count=120, size=32, seed=3, workers=1))


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory, archive: Path) -> tuple[Path, str, SignDirections]:
    """A tiny bundle, its version before the signs, and the directions learned and saved into it."""
    bundle = tiny_bundle(tmp_path_factory.mktemp("signs") / "bundle")
    before = Bundle.open(bundle).version
    directions = train_signs(Bundle.open(bundle), archive, CONFIG)
    directions.save(bundle)
    return bundle, before, directions


def test_directions_are_unit_mutually_orthogonal_stored_and_leave_the_bundle_version_alone(learned) -> None:  # type: ignore[no-untyped-def]
    bundle, before, directions = learned
    reopened = Bundle.open(bundle)
    assert reopened.version == before, "index builds are keyed by the version: signs must not change it"
    loaded = SignDirections.from_bundle(reopened)
    assert loaded is not None and loaded.current and loaded.names == directions.names
    assert set(loaded.names) >= {"exudate", "erythema", "tonsils_enlarged"}
    gram = loaded.w @ loaded.w.T
    assert torch.allclose(gram, torch.eye(len(loaded.names)), atol=1e-5), gram
    assert torch.allclose(loaded.appearance.norm(dim=1), torch.ones(len(loaded.names)), atol=1e-5)
    assert torch.equal(loaded.w, directions.w) and loaded.w_steps == directions.w_steps
    entry = json.loads((bundle / BUNDLE_INFO).read_text())[SIGNS_ENTRY]
    assert entry["data_fingerprint"] and set(entry["quality"]["exudate"]) >= {"probe_auc", "w_spearman", "appearance_auc"}


def test_the_probe_score_rises_monotonically_along_the_learned_w_directions(learned) -> None:  # type: ignore[no-untyped-def]
    _, _, directions = learned
    quality = directions.record["quality"]
    spearman = {sign: quality[sign]["w_spearman"] for sign in directions.names}
    # measured on fresh w the fit never saw, by the probes trained on the archive
    assert spearman["exudate"] == pytest.approx(1.0), spearman
    assert all(np.diff(quality["exudate"]["w_score_by_strength"]) > 0)
    assert sum(value > 0.9 for value in spearman.values()) >= 4, spearman


def test_a_boundary_in_w_recovers_the_direction_that_decides_the_label() -> None:
    generator = torch.Generator().manual_seed(1)
    w = torch.randn(600, 16, generator=generator) * torch.linspace(0.5, 2.0, 16)  # unequal spreads, as W has
    truth = torch.nn.functional.normalize(torch.randn(16, generator=generator), dim=0)
    normal, record = boundary_normal(w, w @ truth - 0.3, CONFIG)
    assert float(normal @ truth) > 0.95 and record["w_labels"] == "probe"
    rare, record = boundary_normal(w, w @ truth - 100.0, CONFIG)  # no sample has it: split at the median
    assert float(rare @ truth) > 0.95 and record["w_labels"] == "median"
    inputs = torch.nn.functional.normalize(torch.randn(3, 64, generator=generator), dim=1)  # nearly orthogonal
    rows = orthonormalise(inputs)
    assert torch.allclose(rows @ rows.T, torch.eye(3), atol=1e-5)
    assert ((rows * inputs).sum(1) > 0.95).all(), "each sign keeps its own direction"
    assert torch.allclose(orthonormalise(inputs.flip(0)), rows.flip(0), atol=1e-5), "no sign is privileged by its order"


def test_an_appearance_edit_moves_the_vector_towards_the_sign_and_keeps_it_unit(learned) -> None:  # type: ignore[no-untyped-def]
    _, _, directions = learned
    sign = directions.appearance[0].numpy()
    other = np.roll(sign, 1) - (np.roll(sign, 1) @ sign) * sign
    vector = (-0.5 * sign + other / np.linalg.norm(other)).astype(np.float32)
    vector /= np.linalg.norm(vector)  # a unit query vector leaning away from the sign
    edited = directions.edit_appearance(vector, {directions.names[0]: 1.0})
    assert math.isclose(float(np.linalg.norm(edited)), 1.0, rel_tol=1e-5)
    assert float(edited @ directions.appearance[0].numpy()) > float(vector @ directions.appearance[0].numpy())
    assert np.array_equal(directions.edit_appearance(vector, {}), vector)
    first = directions.names[0]
    num_ws = 1 + max((i for layers in directions.layers.values() if layers for i in layers), default=0)  # G's style inputs

    def offset(strength: float, routes: tuple[str, ...] | None = None) -> torch.Tensor:
        return directions.style_offset({first: strength}, num_ws, routes)

    assert not offset(0.5, ("appearance",)).any()
    own = dataclasses.replace(directions, mix=None).style_offset({first: 0.5}, num_ws)
    assert torch.allclose(own.norm(dim=1).max(), torch.tensor(0.5 * directions.w_steps[0]), rtol=1e-5)
    # the picture's W edit stops at strength 1, however far the appearance edit may go
    assert torch.equal(offset(3.0), offset(1.0))
    # an absent sign moves the other way, as far at most
    assert torch.allclose(offset(-0.5), -offset(0.5)) and torch.equal(offset(-3.0), offset(-1.0))


@pytest.mark.parametrize("asked, message", [
    ({"pus": 1.0}, "unknown sign 'pus'"), ({"exudate": 1.5}, "from -1 .absent. to 1"), ({"exudate": -1.1}, "from -1 .absent. to 1"),
    ({"exudate": float("nan")}, "from -1 .absent. to 1"), ({"exudate": True}, "from -1 .absent. to 1"),
])
def test_bad_signs_are_one_sentence_naming_the_known_signs(asked: dict, message: str) -> None:
    known = ("exudate", "erythema")
    with pytest.raises(SignError, match=message) as raised:
        check_strengths(asked, known)
    assert "known signs: exudate, erythema" in str(raised.value)
    with pytest.raises(SignError, match="no sign directions"):
        require_signs(None, {"exudate": 1.0})
    assert require_signs(None, {}) == {}
    assert parse_sign_items(["exudate=0.5", "erythema", "cobblestoning=present"]) == {
        "exudate": 0.5, "erythema": PRESENT, "cobblestoning": PRESENT}
    assert check_strengths({"exudate": PRESENT}, known) == {"exudate": 1.0}, "present without a choice: 1"
    assert check_strengths({"exudate": ABSENT, "erythema": -0.5}, known) == {"exudate": -1.0, "erythema": -0.5}, "absent: -1"
    assert parse_sign_items(["exudate=absent", "erythema=-0.5"]) == {"exudate": ABSENT, "erythema": -0.5}
    with pytest.raises(SignError, match="NAME=STRENGTH"):
        parse_sign_items(["exudate=lots"])


def test_strengths_chosen_on_validation_are_stored_and_are_what_present_means(learned, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    bundle, _, directions = learned
    copy = Path(shutil.copytree(bundle, tmp_path / "chosen"))
    first, second = directions.names[:2]
    strengths = {sign: 1.0 for sign in directions.names} | {first: 4.0, second: 0.5}
    evidence = {"heldout_fingerprint": "f" * 16, "validation_queries": 12}
    absent = {sign: 0.0 for sign in directions.names} | {first: 2.0}
    assert directions.latent_weight is None, "no choice: sign queries keep the build's latent weight"
    mix = torch.eye(len(directions.names)) + 0.1 * torch.ones(len(directions.names), len(directions.names))
    dataclasses.replace(directions, mix=mix).with_chosen(("appearance",), strengths, 2.0, evidence, absent,
                                                         latent_weight=0.5, latent_outline_only=True).save(copy)
    entry = json.loads((copy / BUNDLE_INFO).read_text())[SIGNS_ENTRY]
    assert entry[CHOSEN]["strengths"] == strengths and entry[CHOSEN]["heldout_fingerprint"] == "f" * 16
    assert entry[CHOSEN]["absent_strengths"] == absent
    assert entry["data_fingerprint"] == directions.record["data_fingerprint"], "the directions' own record is kept"
    loaded = SignDirections.from_bundle(Bundle.open(copy))

    def check(asked: dict) -> dict[str, float]:  # how the engine, the CLI and the API check a query's signs
        return require_signs(loaded, asked)

    assert loaded.routes == ("appearance",) and loaded.appearance_weight == 2.0 and loaded.max_strength == 4.0
    assert loaded.latent_weight == 0.5 and torch.equal(loaded.mix, mix), "the mix of the W edits is stored"
    assert loaded.latent_outline_only and not directions.latent_outline_only
    assert check({first: PRESENT, second: PRESENT}) == {first: 4.0, second: 0.5}
    assert check({first: ABSENT, second: ABSENT}) == {first: -2.0, second: -0.0} and loaded.min_strength == -2.0
    assert check({first: 3.0}) == {first: 3.0}, "the range reaches the largest chosen strength"
    with pytest.raises(SignError, match="from -2 .absent. to 4, 'present' or 'absent'"):
        check({first: 4.5})
    (applied,) = loaded.applied(check({first: PRESENT}))
    assert applied.appearance_shift == pytest.approx(4.0 * loaded.appearance_steps[0]) and applied.w_shift == 0.0
    assert directions.defaults == {sign: 1.0 for sign in directions.names}, "the source bundle chose nothing"
    directions.save(copy)  # directions learned again: what was chosen for the old ones does not outlive them
    relearned = SignDirections.from_bundle(Bundle.open(copy))
    assert CHOSEN not in relearned.record and relearned.defaults == directions.defaults and relearned.max_strength == 1.0
    with pytest.raises(ValueError, match="every sign"):
        directions.with_chosen(("w",), {first: 1.0}, 1.0, {})


def test_a_picture_draws_its_signs_in_w_when_searches_rank_by_the_appearance_edit_alone(tmp_path: Path) -> None:
    import shutil

    from formats.sketch import CanonicalSketch
    from generation.pipeline import QueryModels
    from generation.presets import SHIPPED_BUNDLE

    copy = Path(shutil.copytree(SHIPPED_BUNDLE, tmp_path / "bundle"))
    shipped = SignDirections.from_bundle(Bundle.open(copy))
    shipped.with_chosen(("appearance",), {sign: 1.0 for sign in shipped.names}, 1.0, {}).save(copy)
    models = QueryModels.load(copy)
    pixels = np.zeros((models.resolution, models.resolution), dtype=np.uint8)
    pixels[8:-8, models.resolution // 2] = 255
    plain, drawn = (models.pictures(CanonicalSketch(pixels), 0, asked)[-1] for asked in ({}, {"erythema": 1.0}))
    assert not np.array_equal(plain, drawn), "the picture (pad preview, /v1/generate) shows the sign"
    assert models.w_offsets([{"erythema": 1.0}]).abs().sum() == 0, "a search's W edit follows the chosen route"


def test_directions_of_another_generator_refuse_until_retrained(learned, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    bundle, _, _ = learned
    copy = Path(shutil.copytree(bundle, tmp_path / "copy"))
    info = json.loads((copy / BUNDLE_INFO).read_text())
    info[SIGNS_ENTRY]["learned_with"]["generator"] = "0" * 64
    (copy / BUNDLE_INFO).write_text(json.dumps(info))
    stale = SignDirections.from_bundle(Bundle.open(copy))
    assert stale is not None and not stale.current
    with pytest.raises(SignError, match="s2m train signs"):
        stale.strengths({"exudate": 1.0})


def test_s2m_train_signs_writes_a_copy_and_leaves_the_source_bundle_as_it_was(archive: Path, tmp_path: Path) -> None:
    source = tiny_bundle(tmp_path / "source")
    info_before = (source / BUNDLE_INFO).read_text()
    out = tmp_path / "with-signs"
    result = CliRunner().invoke(app, ["train", "signs", "--model", str(source), "--data", str(archive), "--out", str(out),
                                      "--probe-images", "120", "--w-samples", "200"])
    assert result.exit_code == 0, result.output
    assert "probe AUC" in result.output and f"bundle version {Bundle.open(source).version}" in result.output
    assert (source / BUNDLE_INFO).read_text() == info_before and not (source / "signs.safetensors").exists()
    assert SignDirections.from_bundle(Bundle.open(out)) is not None
    unlabelled = CliRunner().invoke(app, ["train", "signs", "--model", str(source), "--data", str(tmp_path)])
    assert unlabelled.exit_code == 2 and "metadata.csv" in unlabelled.output
    again = CliRunner().invoke(app, ["train", "signs", "--model", str(source), "--data", str(archive), "--out", str(out)])
    assert again.exit_code == 2 and "exists already" in again.output


def test_a_latent_without_the_signs_keeps_only_what_lies_outside_their_directions(learned) -> None:  # type: ignore[no-untyped-def]
    _, _, directions = learned
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(5, directions.w.shape[1])).astype(np.float32)
    latents /= np.linalg.norm(latents, axis=1, keepdims=True)
    outline = directions.outline_latent(latents)
    signs = directions.w.numpy()
    assert np.abs(outline @ signs.T).max() < 1e-5, "nothing of any sign's W direction is left"
    assert np.allclose(np.linalg.norm(outline, axis=1), 1.0, atol=1e-5)
    along = latents + 3.0 * signs[0]  # the same vectors pushed along one sign: the same outline
    along /= np.linalg.norm(along, axis=1, keepdims=True)
    assert np.allclose(directions.outline_latent(along), outline, atol=1e-5)
    assert np.allclose(directions.outline_latent(outline[0]), outline[0], atol=1e-5), "one vector, already outside: unchanged"
