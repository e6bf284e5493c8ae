"""Sketch2MedI pipeline: bundle round trip, determinism and batching, and `s2m generate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from sketch2medi_fixtures import tiny_bundle
from typer.testing import CliRunner

from generation.bundle import GENERATOR, Bundle, save_network
from generation.e4e import Encoder, EncoderConfig
from generation.hyperstyle import HyperNetwork, HyperNetworkConfig
from generation.pipeline import Sketch2MedI

RESOLUTION = 32
STEPS = 3


def _perturbed(module: torch.nn.Module, scale: float) -> torch.nn.Module:
    """Move the zero-initialised output layers so that E and H change the image."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("out_factor.weight") or name == "head.2.weight":
                parameter.normal_(0, scale)
    return module


def _bundle_with_pipeline(folder: Path, with_refiner: bool = True) -> tuple[Path, Sketch2MedI]:
    bundle = tiny_bundle(folder)
    generator = Bundle.open(bundle).load(GENERATOR)
    torch.manual_seed(1)
    encoder = _perturbed(Encoder(EncoderConfig.for_preset("tiny", w_dim=generator.config.w_dim)), 0.1)
    encoder.set_latent_average(generator.mapping.w_avg)
    save_network(bundle, "encoder", encoder, encoder.config)
    refiner = None
    if with_refiner:
        refiner = _perturbed(HyperNetwork(HyperNetworkConfig.for_preset("tiny"), generator.synthesis.weight_shapes()), 0.05)
        save_network(bundle, "refiner", refiner, refiner.config, refinement_steps=STEPS)
    return bundle, Sketch2MedI(generator, encoder, refiner, STEPS)


def _sketches(count: int) -> torch.Tensor:
    torch.manual_seed(2)
    return torch.where(torch.rand(count, 1, RESOLUTION, RESOLUTION) < 0.1, -1.0, 1.0)  # [B, 1, R, R]


def _sketch_file(path: Path) -> Path:
    image = Image.new("L", (96, 96), 255)
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 10, 76, 60), outline=0, width=3)
    draw.line((48, 30, 48, 55), fill=0, width=3)
    image.save(path)
    return path


def test_a_saved_and_loaded_bundle_gives_identical_outputs(tmp_path) -> None:
    bundle, in_memory = _bundle_with_pipeline(tmp_path / "bundle")
    loaded = Sketch2MedI.from_bundle(bundle)
    sketches = _sketches(3)
    expected, output = in_memory.run(sketches), loaded.run(sketches)
    assert loaded.default_steps == STEPS and len(output.steps) == STEPS
    assert torch.equal(expected.w, output.w) and torch.equal(expected.x_0, output.x_0)
    assert all(torch.equal(a, b) for a, b in zip(expected.steps, output.steps))
    assert output.image is output.steps[-1] and not torch.equal(output.image, output.x_0)


def test_run_is_deterministic_and_batching_does_not_change_results(tmp_path) -> None:
    _, pipeline = _bundle_with_pipeline(tmp_path / "bundle")
    sketches = _sketches(3)
    batch, again = pipeline.run(sketches), pipeline.run(sketches)
    assert torch.equal(batch.w, again.w) and torch.equal(batch.image, again.image)
    for i in range(3):
        one = pipeline.run(sketches[i : i + 1])
        torch.testing.assert_close(one.w, batch.w[i : i + 1])
        torch.testing.assert_close(one.x_0, batch.x_0[i : i + 1])
        torch.testing.assert_close(one.image, batch.image[i : i + 1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batch.image[0], batch.image[1])


def test_step_count_and_input_are_checked(tmp_path) -> None:
    bundle, pipeline = _bundle_with_pipeline(tmp_path / "bundle", with_refiner=False)
    loaded = Sketch2MedI.from_bundle(bundle)
    assert loaded.refiner is None and loaded.default_steps == 0
    output = loaded.run(_sketches(2))
    assert output.steps == () and output.image is output.x_0
    with pytest.raises(ValueError, match="no refiner"):
        loaded.run(_sketches(2), steps=2)
    with pytest.raises(ValueError, match="sketches must be"):
        loaded.run(torch.zeros(2, 3, RESOLUTION, RESOLUTION))


def test_generate_command_writes_the_image_or_the_strip_of_steps(tmp_path) -> None:
    from api.cli import app

    bundle, pipeline = _bundle_with_pipeline(tmp_path / "bundle")
    sketch = _sketch_file(tmp_path / "sketch.png")
    runner = CliRunner()
    single = tmp_path / "out.png"
    result = runner.invoke(app, ["generate", str(sketch), "-o", str(single), "--model", str(bundle)])
    assert result.exit_code == 0, result.output
    with Image.open(single) as image:
        written = np.asarray(image.convert("RGB"))
    expected = pipeline.run(pipeline.load_sketch(sketch)).image[0].clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()
    assert written.shape == (RESOLUTION, RESOLUTION, 3)
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1

    strip = tmp_path / "strip.png"
    result = runner.invoke(app, ["generate", str(sketch), "-o", str(strip), "--model", str(bundle), "--show-steps",
                                 "--steps", "2"])
    assert result.exit_code == 0, result.output
    with Image.open(strip) as image:
        assert image.height < 2 * RESOLUTION and image.width > 4 * RESOLUTION  # sketch | x_0 | x_1 | x_2


def test_generate_command_refuses_a_blank_sketch_and_writes_nothing(tmp_path) -> None:
    from api.cli import app

    bundle, _ = _bundle_with_pipeline(tmp_path / "bundle")
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    output = tmp_path / "out.png"
    result = CliRunner().invoke(app, ["generate", str(blank), "-o", str(output), "--model", str(bundle)])
    assert result.exit_code == 2
    assert "blank" in result.output
    assert not output.exists()


def test_a_bundle_whose_generator_changed_after_training_e_is_refused(tmp_path) -> None:
    from generation.stylegan2 import Generator, GeneratorConfig

    bundle, pipeline = _bundle_with_pipeline(tmp_path / "bundle", with_refiner=False)
    save_network(bundle, "encoder", pipeline.encoder, pipeline.encoder.config, generator_sha256=Bundle.open(bundle).generator_digest)
    assert Sketch2MedI.from_bundle(bundle).encoder is not None
    torch.manual_seed(9)
    retrained = Generator(GeneratorConfig.for_preset("tiny"))
    save_network(bundle, "generator", retrained, retrained.config)
    with pytest.raises(ValueError, match="retrain it with `s2m train encoder`"):
        Sketch2MedI.from_bundle(bundle)


def test_paired_dice_gain_compares_each_image_with_itself() -> None:
    from generation.pipeline_eval import paired_gain

    before = [{1: 0.5, 2: 0.5}, {1: 0.2}, {}, {3: 0.6}]
    after = [{1: 0.7, 2: 0.5}, {1: 0.1}, {1: 0.9}, {3: 0.9}]
    gain = paired_gain(before, after, z=1.96)
    assert gain["images"] == 3  # the image S found nothing in before is left out
    assert gain["mean"] == pytest.approx((10 - 10 + 30) / 3)
    assert gain["share_improved"] == pytest.approx(2 / 3)
    assert gain["low"] < gain["mean"] < gain["high"]
