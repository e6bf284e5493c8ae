"""HyperNetwork H: heads derived from G's weights, exact start at G(w), offset accumulation."""

from __future__ import annotations

import dataclasses

import torch

from generation.hyperstyle import HyperNetwork, HyperNetworkConfig, accumulate_offsets, refinement_step
from generation.hyperstyle.model import TORGB_PREFIX
from generation.stylegan2 import Generator, GeneratorConfig


def _setup(seed: int = 0) -> tuple[Generator, HyperNetwork, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    generator = Generator(GeneratorConfig.for_preset("tiny")).eval().requires_grad_(False)
    hypernet = HyperNetwork(HyperNetworkConfig.for_preset("tiny"), generator.synthesis.weight_shapes())
    w = generator.mapping(torch.randn(2, generator.config.z_dim))  # [2, w_dim]
    resolution = generator.config.resolution
    sketches = torch.rand(2, 1, resolution, resolution) * 2 - 1
    return generator, hypernet, w, sketches


def _perturb_output_layers(hypernet: HyperNetwork, scale: float) -> None:
    """Give H non-zero offsets (it is zero-initialised)."""
    with torch.no_grad():
        for block in hypernet.blocks.values():
            block.out_factor.weight.normal_(0, scale)


def test_refinement_heads_follow_the_generator_weight_shapes() -> None:
    config = dataclasses.replace(GeneratorConfig.for_preset("tiny"), channel_base=256, channel_max=24)
    generator = Generator(config)
    shapes = generator.synthesis.weight_shapes()
    hypernet = HyperNetwork(HyperNetworkConfig.for_preset("tiny"), shapes)
    assert hypernet.layer_names == [n for n in shapes if not n.startswith(TORGB_PREFIX)]
    r = config.resolution
    offsets = hypernet(torch.zeros(3, 1, r, r), torch.zeros(3, 3, r, r))
    for name, delta in offsets.items():
        c_out, c_in, _, _ = shapes[name]
        assert delta.shape == (3, c_out, c_in, 1, 1)
    with_rgb = HyperNetwork(dataclasses.replace(HyperNetworkConfig.for_preset("tiny"), tune_torgb=True), shapes)
    assert with_rgb.layer_names == list(shapes)


def test_zero_initialised_refiner_starts_exactly_at_g_of_w() -> None:
    generator, hypernet, w, sketches = _setup()
    x_0 = generator.synthesis(w, noise_mode="const")
    x_1, total = refinement_step(generator, hypernet, w, sketches, x_0, None)
    assert all(delta.abs().max() == 0 for delta in total.values())
    assert torch.equal(x_1, x_0)


def test_zero_initialised_refiner_still_learns() -> None:
    generator, hypernet, w, sketches = _setup()
    x_0 = generator.synthesis(w, noise_mode="const")
    x_1, _ = refinement_step(generator, hypernet, w, sketches, x_0, None)
    (x_1 - torch.ones_like(x_1)).pow(2).mean().backward()
    grads = [block.out_factor.weight.grad.abs().sum() for block in hypernet.blocks.values()]
    assert all(g > 0 for g in grads)


def test_offsets_accumulate_over_steps_as_in_eq_6() -> None:
    generator, hypernet, w, sketches = _setup(seed=3)
    _perturb_output_layers(hypernet, 0.05)
    hypernet.eval()
    x_0 = generator.synthesis(w, noise_mode="const")
    with torch.no_grad():
        x_1, total_1 = refinement_step(generator, hypernet, w, sketches, x_0, None)
        x_2, total_2 = refinement_step(generator, hypernet, w, sketches, x_1, total_1)
        delta_1 = hypernet(sketches, x_0)
        delta_2 = hypernet(sketches, x_1)
    assert not torch.equal(x_1, x_0) and not torch.equal(x_2, x_1)
    for name in hypernet.layer_names:
        torch.testing.assert_close(total_1[name], delta_1[name])
        torch.testing.assert_close(total_2[name], delta_1[name] + delta_2[name])
    expected = generator.synthesis(w, weight_deltas={n: delta_1[n] + delta_2[n] for n in hypernet.layer_names})
    torch.testing.assert_close(x_2, expected)


def test_accumulated_sum_is_detached_so_each_step_trains_on_its_own() -> None:
    first = {"conv4": torch.ones(1, 2, 2, 1, 1, requires_grad=True)}
    second = {"conv4": torch.full((1, 2, 2, 1, 1), 2.0, requires_grad=True)}
    total = accumulate_offsets(accumulate_offsets(None, first), second)
    total["conv4"].sum().backward()
    assert first["conv4"].grad is None
    assert torch.equal(second["conv4"].grad, torch.ones(1, 2, 2, 1, 1))
    assert torch.equal(total["conv4"], torch.full((1, 2, 2, 1, 1), 3.0))


def test_a_short_training_run_lowers_l_sim_of_x_t_below_x_0(tmp_path) -> None:
    from sketch2medi_fixtures import tiny_bundle, tiny_pairs

    from generation.bundle import save_network
    from generation.e4e import Encoder, EncoderConfig
    from generation.hyperstyle.config import HyperNetworkConfig, RefinerTrainConfig
    from generation.losses import SimilarityConfig
    from generation.paired import PairedInputs, build_similarity_loss, fixed_batch
    from generation.training import RunOptions
    from generation.hyperstyle.train import train_refiner
    from generation.pipeline import Sketch2MedI
    from generation.bundle import GENERATOR, Bundle

    bundle = tiny_bundle(tmp_path / "bundle")
    generator = Bundle.open(bundle).load(GENERATOR)
    encoder = Encoder(EncoderConfig.for_preset("tiny", w_dim=generator.config.w_dim))
    encoder.set_latent_average(generator.mapping.w_avg)
    save_network(bundle, "encoder", encoder, encoder.config)
    dataset, sketches = tiny_pairs(tmp_path)
    options = RunOptions(data=dataset, run_dir=tmp_path / "run", bundle=bundle, device="cpu", progress=False)
    train_refiner(options, PairedInputs(sketches), HyperNetworkConfig.for_preset("tiny"), SimilarityConfig.for_preset("tiny"),
                  dataclasses.replace(RefinerTrainConfig.for_preset("tiny"), steps=12))

    pipeline = Sketch2MedI.from_bundle(bundle)
    assert pipeline.default_steps == 3
    similarity, _ = build_similarity_loss(Bundle.open(bundle), SimilarityConfig.for_preset("tiny"), torch.device("cpu"))
    sketch_batch, images = fixed_batch(dataset, sketches, 32, 8, torch.device("cpu"))
    output = pipeline.run(sketch_batch)
    assert len(output.steps) == 3
    with torch.no_grad():
        assert similarity(images, output.image)["total"] < 0.85 * similarity(images, output.x_0)["total"]
    assert (options.run_dir / "samples" / "step0000010.png").exists()
