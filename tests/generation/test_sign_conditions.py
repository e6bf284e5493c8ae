"""Conditional manipulation of the sign directions (issue 38): shape held fixed, edits chosen on validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation.sign_conditions import (ANATOMY, SIGNS_ONLY, choose_edits, compensating_mix, dice_by_class, edit_candidates,
                                        fit_shape_directions, layer_candidates, project_out, shape_attributes)
from generation.sign_training import SignTrainConfig, boundary_normal, orthonormalise
from generation.signs import LAYERS, SignDirections
from generation.stylegan2.monitor import auc


def test_a_sign_direction_loses_the_shape_it_was_mixed_with_and_still_separates_the_sign() -> None:
    generator = torch.Generator().manual_seed(2)
    dim = 24
    w, fresh = torch.randn(800, dim, generator=generator), torch.randn(400, dim, generator=generator)
    shape, own = torch.nn.functional.normalize(torch.randn(2, dim, generator=generator), dim=1)
    sign_truth = torch.nn.functional.normalize(0.6 * shape + own - (own @ shape) * shape, dim=0)  # G's signs come with shape
    other_sign = torch.nn.functional.normalize(torch.randn(dim, generator=generator), dim=0)
    noise = 0.1 * np.random.default_rng(0).normal(size=len(w))
    # in the masks' own units: an area share near 0.1, a centre near 0.5, not standardised
    attributes = np.stack([0.1 + 0.01 * ((w @ shape).numpy() + noise), 0.5 + 0.02 * (w @ own).numpy(),
                           np.full(len(w), np.nan)], 1)
    # tongue area carries shape; tonsil_area is what a sign is about (never held fixed); an absent class is NaN
    shapes = fit_shape_directions(w, attributes, ("tongue_area", "tonsil_area", "uvula_x"), min_r2=0.5)
    assert shapes.names == ("tongue_area",) and shapes.r2["tonsil_area"] > 0.9 and np.isnan(shapes.r2["uvula_x"])
    normals = torch.stack([boundary_normal(w, w @ truth, SignTrainConfig())[0] for truth in (sign_truth, other_sign)])
    assert float((normals[0] @ shapes.directions[0]).abs()) > 0.4, "the raw boundary carries the shape"
    directions = orthonormalise(project_out(normals, shapes.basis()))
    assert float((directions @ shapes.directions.T).abs().max()) < 1e-5
    assert torch.allclose(directions @ directions.T, torch.eye(2), atol=1e-5)
    assert auc((fresh @ directions[0]).numpy(), (fresh @ sign_truth > 0).numpy()) > 0.85, "it still separates the sign"
    with pytest.raises(ValueError, match="within the shape"):
        project_out(shapes.directions[:1], shapes.basis())


def test_edits_are_chosen_by_the_goals_first_and_the_rise_second() -> None:
    candidates = edit_candidates(10)
    assert candidates["all"].layers == tuple(range(10)) and candidates["coarse"].layers == (0, 1, 2, 3)
    assert set(layer_candidates(10)) == {"coarse", "middle", "fine", "coarse+middle", "middle+fine", "all"}
    assert len(candidates) == 6 * 2 * 2 and candidates["middle x0.5"].scale == 0.5
    assert candidates["fine signs only"].conditioning == SIGNS_ONLY and candidates["fine"].conditioning == ANATOMY

    def exudate(name: str) -> tuple[float, float, float]:  # a full middle step moves the anatomy, half of it does not
        layers, _, rest = name.partition(" ")
        full = {"all": (9, 4, 0.85), "coarse": (6, 1, 0.7), "middle": (5, 1, 0.88), "fine": (1, 0, 0.99),
                "coarse+middle": (8, 3, 0.83), "middle+fine": (-2, 0, 0.99)}[layers]
        half = "x0.5" in rest
        return (full[0] / 2, full[1] / 2, 1 - (1 - full[2]) / 2) if half else full

    def tonsils(name: str) -> tuple[float, float, float]:  # held to the anatomy it barely moves; signs only it grows
        return (3.0, 0.5, 0.93) if name == "fine signs only" else (4.0, 0.5, 0.7) if "signs only" in name else (0.1, 0.0, 0.99)

    table = {"exudate": exudate, "tonsils_enlarged": tonsils, "erythema": lambda name: (
        {"coarse+middle": 7}.get(name, 1), 10, 0.95)}
    chosen, evidence = choose_edits(("exudate", "tonsils_enlarged", "erythema"), candidates, lambda sign, candidate: dict(zip(
        ("rise", "largest_other_move", "other_dice"), table[sign](next(n for n, c in candidates.items() if c == candidate)))))
    assert evidence["exudate"]["chosen"] == "middle x0.5", "half the step where the whole one moves the anatomy"
    assert chosen["exudate"].scale == 0.5 and evidence["exudate"]["others_met"]
    assert evidence["tonsils_enlarged"]["chosen"] == "fine signs only", "the largest rise that keeps the anatomy"
    assert evidence["erythema"]["chosen"] == "coarse+middle" and not evidence["erythema"]["others_met"]


def test_style_offsets_edit_only_each_signs_chosen_layers() -> None:
    w = torch.eye(3, 8)
    directions = SignDirections(("exudate", "erythema", "cobblestoning"), w, torch.eye(3, 4), (2.0, 1.0, 1.0),
                                (1.0, 1.0, 1.0), 1.0, ("w", "appearance"), {LAYERS: {"exudate": [0, 1], "erythema": [3]}})
    offset = directions.style_offset({"exudate": 0.5, "erythema": 1.0, "cobblestoning": 1.0}, num_ws=4)
    assert torch.equal(offset[0], torch.tensor([1.0, 0, 1, 0, 0, 0, 0, 0])), "exudate and all-layer cobblestoning"
    assert torch.equal(offset[2], torch.tensor([0.0, 0, 1, 0, 0, 0, 0, 0]))
    assert torch.equal(offset[3], torch.tensor([0.0, 1, 1, 0, 0, 0, 0, 0]))
    assert not directions.style_offset({"exudate": 1.0}, 4, routes=("appearance",)).any()


def test_a_mix_of_the_signs_own_edits_cancels_what_g_draws_together() -> None:
    response = np.array([[2.0, 0.5, 0.0], [1.5, 4.0, 0.2], [0.0, 0.3, 1.0]])  # [read, edited]: exudate reddens
    exact = compensating_mix(response, 1e-9)
    assert np.allclose(exact @ response.T, np.diag(np.diag(response)), atol=1e-6), "to first order each edit moves its own sign only"
    assert exact[0, 1] < 0, "more exudate carries a share of less erythema"
    shrunk = compensating_mix(response, 1.0)
    assert np.abs(shrunk - np.eye(3)).sum() < np.abs(exact - np.eye(3)).sum(), "a ridge keeps the edit nearer its own"
    assert np.allclose(compensating_mix(response, 1e6), np.eye(3), atol=1e-4)
    falling = response.copy()
    falling[2, 2] = -1.0  # a sign that its own edit does not raise keeps its own edit
    assert np.array_equal(compensating_mix(falling, 0.1)[2], [0.0, 0.0, 1.0])


def test_a_mixed_sign_edit_adds_the_other_signs_edits_on_their_own_layers() -> None:
    w = torch.eye(2, 4)
    mix = torch.tensor([[1.0, -0.5], [0.0, 1.0]])
    directions = SignDirections(("exudate", "erythema"), w, torch.eye(2, 3), (2.0, 1.0), (1.0, 1.0), 1.0, ("w", "appearance"),
                                {LAYERS: {"exudate": [0], "erythema": [1]}}, mix=mix)
    offset = directions.style_offset({"exudate": 1.0}, num_ws=2)
    assert torch.equal(offset, torch.tensor([[2.0, 0, 0, 0], [0, -0.5, 0, 0]]))
    assert torch.equal(directions.style_offset({"exudate": -3.0}, 2), -offset), "absent mirrors it, clamped at 1"
    assert torch.equal(directions.style_offset({"erythema": 1.0}, 2), torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 0]]))


def test_masks_give_dice_and_shape_attributes() -> None:
    plain = np.zeros((1, 2, 4, 4), dtype=bool)
    plain[0, 0, :2, :2] = True
    moved = np.zeros_like(plain)
    moved[0, 0, :2, 1:3] = True
    assert dice_by_class(moved, plain).tolist() == [[0.5, 1.0]], "half the overlap; two empty masks agree"
    area, x, y, absent_area, absent_x, _ = shape_attributes(plain)[0]
    assert (area, x, y) == pytest.approx((0.25, 1 / 6, 1 / 6)) and absent_area == 0 and np.isnan(absent_x)


def test_the_shipped_bundle_draws_each_sign_on_its_own_style_inputs_of_g() -> None:
    from generation.data import sketches_to_tensor
    from generation.pipeline import QueryModels
    from generation.presets import SHIPPED_BUNDLE

    models = QueryModels.load(SHIPPED_BUNDLE)
    assert models.signs is not None and models.signs.probes(), "the shipped signs keep their classifiers"
    limited = next(sign for sign, layers in models.signs.layers.items() if layers is not None and len(layers) < 10)
    sketch = np.full((1, models.resolution, models.resolution), 255, np.uint8)
    sketch[0, 16:48, 20] = sketch[0, 16:48, 44] = 0
    asked = {limited: 1.0}
    output = models.generate(sketch, 0, [asked], ("w",))  # as a picture draws its signs
    with torch.no_grad():
        w = models.pipeline.encoder(sketches_to_tensor(sketch))
        offset = models.signs.style_offset(asked, models.pipeline.generator.synthesis.num_ws, ("w",))
        expected = models.pipeline.generator.synthesis(w[:, None] + offset, noise_mode="const")
        edited_layer = offset[models.signs.layers[limited][0]]  # the same edit on every style input
        everywhere = models.pipeline.generator.synthesis(w + edited_layer, noise_mode="const")
    assert torch.allclose(output.x_0, expected, atol=1e-5), "only the chosen style inputs move"
    assert not torch.allclose(output.x_0, everywhere, atol=1e-3)
    assert torch.allclose(output.w, w + offset.mean(0), atol=1e-6), "the latent channel reads the layers' mean"


def test_an_edit_keeps_the_anatomy_only_if_it_keeps_it_with_the_sign_said_absent_too() -> None:
    """The pad draws a sign both ways (present, absent): the edit's choice reads the anatomy at both."""
    from generation.bundle import Bundle
    from generation.networks import GENERATOR, SYNTHESIZER
    from generation.presets import SHIPPED_BUNDLE
    from generation.sign_conditions import other_dice
    from generation.sign_training import SignProbes, class_masks, edited, sample_w

    bundle = Bundle.open(SHIPPED_BUNDLE)
    directions = SignDirections.from_bundle(bundle)
    assert directions is not None
    generator, synthesizer = bundle.load(GENERATOR), bundle.load(SYNTHESIZER)
    reader = SignProbes(generator, bundle.load_embedder(), directions.probes(), synthesizer, batch_size=16)
    w = sample_w(generator, 16, seed=11)
    _, plain = reader.plain(w)
    assert plain is not None
    edits = {sign: directions.style_offset({sign: 1.0}, generator.synthesis.num_ws, ("w",)) for sign in directions.names}
    kept = {sign: {way: min(other_dice(class_masks(generator, synthesizer, edited(w, way * edit), 16), plain, sign).values())
                   for way in (1.0, -1.0)} for sign, edit in edits.items()}
    sign = max(kept, key=lambda name: abs(kept[name][1.0] - kept[name][-1.0]))
    assert abs(kept[sign][1.0] - kept[sign][-1.0]) > 0.01, kept
    worse = min(kept[sign], key=lambda way: kept[sign][way])
    # the edit given the way that keeps the anatomy better: its negation decides
    measured = reader.measure(w, sign, -worse * edits[sign])["other_dice"]
    assert measured == pytest.approx(kept[sign][worse]) and measured < kept[sign][-worse], (sign, measured, kept[sign])
