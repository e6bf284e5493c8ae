"""StyleGAN2 networks: shapes per preset, demodulation, weight offsets, gradients, bundle round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation.bundle import GENERATOR, Bundle, save_network
from generation.metrics import RandomConvFeatures, frechet_distance
from generation.stylegan2 import (
    Discriminator,
    DiscriminatorConfig,
    GanTrainConfig,
    Generator,
    GeneratorConfig,
    ModulatedConv2d,
)
from generation.stylegan2.augment import AugmentPipe, translate


@pytest.fixture()
def tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(GeneratorConfig.for_preset("tiny")).eval()


def _layer_outputs(generator: Generator, w: torch.Tensor, deltas: dict | None) -> dict[str, torch.Tensor]:
    outputs: dict[str, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
             for name, layer in generator.synthesis.layers.items()]
    try:
        generator.synthesis(w, weight_deltas=deltas)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_every_preset_maps_z_to_images_of_its_resolution(preset: str) -> None:
    config = GeneratorConfig.for_preset(preset)
    resolution = {"tiny": 32, "small": 64, "paper": 256}[preset]
    # The paper preset is checked on the meta device: shapes without the compute.
    device = torch.device("meta" if preset == "paper" else "cpu")
    with device:
        generator = Generator(config)
        discriminator = Discriminator(DiscriminatorConfig.for_preset(preset))
        z = torch.randn(4, config.z_dim)
        w = generator.mapping(z)
        image = generator.synthesis(w)
        logits = discriminator(image)
    assert config.resolution == resolution
    assert generator.num_ws == 2 * int(np.log2(resolution)) - 2
    assert w.shape == (4, config.w_dim) and generator.mapping.w_avg.shape == (config.w_dim,)
    assert image.shape == (4, 3, resolution, resolution) and image.dtype == torch.float32
    assert logits.shape == (4,) and logits.dtype == torch.float32
    shapes = generator.synthesis.weight_shapes()
    names = list(shapes)
    assert len(names) == 3 * int(np.log2(resolution)) - 4
    assert [i for i, name in enumerate(names) if name.startswith("torgb")] == list(range(1, len(names), 3))
    assert shapes[names[0]] == (config.channels(4), config.channels(4), 3, 3)
    assert shapes[names[-1]] == (3, config.channels(resolution), 1, 1)


def test_small_generator_fits_the_bundle_budget() -> None:
    generator = Generator(GeneratorConfig.for_preset("small"))
    megabytes = sum(t.numel() * t.element_size() for t in generator.state_dict().values()) / 2**20
    assert megabytes < 10


def test_a_single_w_equals_the_same_w_repeated_for_every_layer(tiny_generator: Generator) -> None:
    w = tiny_generator.mapping(torch.randn(2, tiny_generator.config.z_dim))
    repeated = w.unsqueeze(1).repeat(1, tiny_generator.num_ws, 1)
    assert torch.equal(tiny_generator.synthesis(w), tiny_generator.synthesis(repeated))
    with pytest.raises(ValueError, match="ws must be"):
        tiny_generator.synthesis(torch.randn(2, tiny_generator.num_ws + 1, tiny_generator.config.w_dim))


def test_demodulation_keeps_output_variance_bounded_whatever_the_style_scale() -> None:
    torch.manual_seed(0)
    config = GeneratorConfig.for_preset("tiny")
    x = torch.randn(4, 16, 8, 8)
    stds = {}
    for demodulate in (True, False):
        conv = ModulatedConv2d(16, 16, 3, config, demodulate=demodulate, upsample=False)
        for scale in (1.0, 100.0):
            stds[demodulate, scale] = conv(x, torch.randn(4, config.w_dim) * scale).std().item()
    assert 0.3 < stds[True, 1.0] < 3 and 0.3 < stds[True, 100.0] < 3
    assert stds[False, 100.0] > 10 * stds[True, 100.0]


def test_demodulated_layers_of_g_stay_bounded_when_w_grows_a_thousandfold(tiny_generator: Generator) -> None:
    w = tiny_generator.mapping(torch.randn(4, tiny_generator.config.z_dim))
    plain = _layer_outputs(tiny_generator, w, None)
    huge = _layer_outputs(tiny_generator, w * 1000, None)
    for name in plain:
        if not name.startswith("torgb"):  # toRGB is modulated but deliberately not demodulated
            assert huge[name].std() < 5 * plain[name].std(), name


def test_zero_weight_deltas_reproduce_the_plain_output_exactly(tiny_generator: Generator) -> None:
    w = tiny_generator.mapping(torch.randn(3, tiny_generator.config.z_dim))
    zeros = {name: torch.zeros(3, *shape) for name, shape in tiny_generator.synthesis.weight_shapes().items()}
    assert torch.equal(tiny_generator.synthesis(w, weight_deltas=zeros), tiny_generator.synthesis(w))


@pytest.mark.parametrize("delta_shape", ["per_channel", "per_input_channel", "full"])
def test_a_delta_changes_the_targeted_layer_and_nothing_before_it(tiny_generator: Generator, delta_shape: str) -> None:
    w = tiny_generator.mapping(torch.randn(2, tiny_generator.config.z_dim))
    shapes = tiny_generator.synthesis.weight_shapes()
    target = "conv16"
    c_out, c_in, k, _ = shapes[target]
    shape = {"per_channel": (2, c_out, c_in, 1, 1), "per_input_channel": (2, 1, c_in, 1, 1),
             "full": (2, c_out, c_in, k, k)}[delta_shape]
    delta = torch.randn(shape) * 0.5
    delta[1] = 0  # sample 1 gets no offset
    plain = _layer_outputs(tiny_generator, w, None)
    offset = _layer_outputs(tiny_generator, w, {target: delta})
    names = list(shapes)
    for name in names[:names.index(target)]:
        assert torch.equal(plain[name], offset[name]), name
    assert not torch.allclose(plain[target][0], offset[target][0], atol=1e-4)
    assert torch.allclose(plain[target][1], offset[target][1], atol=1e-6)


def test_bad_weight_deltas_are_refused_with_a_clear_error(tiny_generator: Generator) -> None:
    w = torch.randn(2, tiny_generator.config.w_dim)
    with pytest.raises(ValueError, match="unknown weight_deltas"):
        tiny_generator.synthesis(w, weight_deltas={"conv5": torch.zeros(1)})
    with pytest.raises(ValueError, match="does not broadcast"):
        tiny_generator.synthesis(w, weight_deltas={"conv8": torch.zeros(2, 7, 1, 1, 1)})
    with pytest.raises(ValueError, match="noise_mode"):
        tiny_generator.synthesis(w, noise_mode="fresh")


def test_gradients_reach_every_parameter_of_g_and_d() -> None:
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig.for_preset("tiny"))
    discriminator = Discriminator(DiscriminatorConfig.for_preset("tiny"))
    image = generator(torch.randn(4, generator.config.z_dim), noise_mode="random")
    discriminator(image).mean().backward()
    for module in (generator, discriminator):
        for name, parameter in module.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_r1_double_backward_flows_through_augmentation_to_d() -> None:
    torch.manual_seed(0)
    discriminator = Discriminator(DiscriminatorConfig.for_preset("tiny"))
    pipe = AugmentPipe.from_config(GanTrainConfig.for_preset("tiny"))
    pipe.p = 1.0
    real = torch.rand(4, 3, 32, 32).mul(2).sub(1).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(pipe(real)).sum(), real, create_graph=True)
    grad.square().sum().backward()
    assert discriminator.from_rgb.weight.grad.abs().sum() > 0


def test_truncation_zero_collapses_every_sample_to_the_mean_w(tiny_generator: Generator) -> None:
    tiny_generator.mapping.estimate_w_avg(500, seed=1)
    images = tiny_generator(torch.randn(3, tiny_generator.config.z_dim), truncation=0.0)
    assert torch.allclose(images[0], images[1], atol=1e-5) and torch.allclose(images[0], images[2], atol=1e-5)
    assert torch.allclose(images[0], tiny_generator.synthesis(tiny_generator.mapping.w_avg[None])[0], atol=1e-5)


def test_bundle_round_trip_gives_the_same_images(tiny_generator: Generator, tmp_path) -> None:
    save_network(tmp_path, "generator", tiny_generator, tiny_generator.config)
    loaded = Bundle.open(tmp_path).load(GENERATOR)
    z = torch.randn(2, tiny_generator.config.z_dim)
    assert loaded.config == tiny_generator.config
    assert torch.equal(loaded(z), tiny_generator(z))
    assert torch.equal(loaded.mapping.w_avg, tiny_generator.mapping.w_avg)


def test_translation_moves_content_by_whole_pixels_with_zero_fill() -> None:
    torch.manual_seed(3)
    image = torch.arange(64.0).reshape(1, 1, 8, 8).repeat(6, 1, 1, 1) + 1
    shifted = translate(image, 0.25)
    for sample in shifted:
        nonzero = sample[0][sample[0] != 0]
        assert set(nonzero.tolist()) <= set(image[0, 0].flatten().tolist())


def test_ada_raises_p_when_d_is_overconfident_and_lowers_it_otherwise() -> None:
    pipe = AugmentPipe.from_config(GanTrainConfig.for_preset("tiny"))
    pipe.adjust(real_sign_mean=0.9, images_since_last=10_000)
    raised = pipe.p
    pipe.adjust(real_sign_mean=0.1, images_since_last=5_000)
    assert raised > 0 and 0 < pipe.p < raised


def test_frechet_distance_matches_the_gaussian_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) * 2 + np.array([1.0, 0.0, 0.0])
    # Means differ by 1; covariances I and 4I: trace term 3 * (1 + 4 - 2 * 2) = 3.
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(1.0 + 3.0, rel=0.1)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, b[:, :2])


def test_random_conv_features_are_deterministic_and_separate_different_image_sets() -> None:
    torch.manual_seed(0)
    reds = torch.full((64, 3, 32, 32), -1.0)
    reds[:, 0] = 0.6
    reds += 0.1 * torch.randn_like(reds)
    noise = torch.rand(64, 3, 32, 32) * 2 - 1
    extractor_a, extractor_b = RandomConvFeatures(), RandomConvFeatures()
    assert torch.equal(extractor_a.embed(reds), extractor_b.embed(reds))
    same = frechet_distance(extractor_a.embed(reds[:32]).numpy(), extractor_a.embed(reds[32:]).numpy())
    different = frechet_distance(extractor_a.embed(reds[:32]).numpy(), extractor_a.embed(noise[:32]).numpy())
    assert different > 10 * same
