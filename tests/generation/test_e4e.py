"""Encoder E and latent discriminator (e4e): shapes, start at mean w, R1, and a learning run."""

from __future__ import annotations

import torch

from generation.e4e import Encoder, EncoderConfig, LatentDiscriminator, LatentDiscriminatorConfig
from generation.e4e.model import r1_penalty
from generation.stylegan2 import Generator, GeneratorConfig


def _tiny_generator() -> Generator:
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig.for_preset("tiny")).eval()
    generator.mapping.estimate_w_avg(256, seed=0)
    return generator


def test_encoder_returns_one_w_per_sketch_centred_on_mean_w_at_initialisation() -> None:
    generator = _tiny_generator()
    config = EncoderConfig.for_preset("tiny", w_dim=generator.config.w_dim)
    encoder = Encoder(config).eval()
    encoder.set_latent_average(generator.mapping.w_avg)
    sketches = torch.rand(3, 1, config.resolution, config.resolution) * 2 - 1  # [B, 1, R, R]
    w = encoder(sketches)
    assert w.shape == (3, generator.config.w_dim)
    assert generator.mapping.w_avg.abs().sum() > 0
    assert torch.equal(w, generator.mapping.w_avg.expand(3, -1))


def test_encoder_rejects_a_mean_w_of_the_wrong_size() -> None:
    encoder = Encoder(EncoderConfig.for_preset("tiny", w_dim=32))
    try:
        encoder.set_latent_average(torch.zeros(16))
    except ValueError as error:
        assert "w_avg" in str(error)
    else:
        raise AssertionError("a mismatched w_avg was accepted")
    assert torch.equal(encoder.w_avg, torch.zeros(32))


def test_r1_penalty_matches_a_finite_difference_gradient() -> None:
    torch.manual_seed(1)
    w_dim = 8
    discriminator = LatentDiscriminator(LatentDiscriminatorConfig.for_generator(w_dim)).double()
    w_real = torch.randn(5, w_dim, dtype=torch.float64)
    step = 1e-6
    squared_norms = []
    with torch.no_grad():
        for sample in w_real:
            grad = torch.zeros(w_dim, dtype=torch.float64)
            for i in range(w_dim):
                offset = torch.zeros(w_dim, dtype=torch.float64)
                offset[i] = step
                grad[i] = (discriminator((sample + offset)[None]) - discriminator((sample - offset)[None])).item() / (2 * step)
            squared_norms.append(grad.pow(2).sum())
    expected = torch.stack(squared_norms).mean()
    penalty = r1_penalty(discriminator, w_real)
    assert expected > 0
    torch.testing.assert_close(penalty, expected, rtol=1e-5, atol=1e-9)
    penalty.backward()  # differentiable in D's weights: R1 regularises D
    assert discriminator.net[0].weight.grad.abs().sum() > 0


def test_latent_discriminator_is_a_four_layer_mlp_on_w() -> None:
    discriminator = LatentDiscriminator(LatentDiscriminatorConfig.for_generator(16))
    linears = [m for m in discriminator.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4 and linears[-1].out_features == 1
    assert discriminator(torch.randn(7, 16)).shape == (7,)


def test_a_short_training_run_lowers_l_sim_and_resumes(tmp_path) -> None:
    import dataclasses

    from sketch2medi_fixtures import tiny_bundle, tiny_pairs

    from generation.bundle import ENCODER, GENERATOR, Bundle
    from generation.e4e.config import EncoderConfig, EncoderTrainConfig
    from generation.e4e.train import train_encoder
    from generation.losses import SimilarityConfig
    from generation.paired import PairedInputs, build_similarity_loss, fixed_batch
    from generation.training import RunOptions, read_jsonl

    bundle = tiny_bundle(tmp_path / "bundle")
    dataset, sketches = tiny_pairs(tmp_path)
    options = RunOptions(data=dataset, run_dir=tmp_path / "run", bundle=bundle, device="cpu", progress=False)
    paired = PairedInputs(sketches)
    w_dim = Bundle.open(bundle).config(GENERATOR)["w_dim"]
    networks = (EncoderConfig.for_preset("tiny", w_dim=w_dim), SimilarityConfig.for_preset("tiny"))
    config = dataclasses.replace(EncoderTrainConfig.for_preset("tiny"), steps=8)
    train_encoder(options, paired, *networks, config)
    train_encoder(dataclasses.replace(options, resume=True), paired, *networks, dataclasses.replace(config, steps=16))

    steps = [r["step"] for r in read_jsonl(options.run_dir / "log.jsonl") if "sim_total" in r]
    assert steps == list(range(1, 17))
    assert Bundle.open(bundle).info["networks"]["encoder"]["steps"] == 16
    assert (options.run_dir / "samples" / "step0000010.png").exists()

    opened = Bundle.open(bundle)
    generator = opened.load(GENERATOR)
    similarity, _ = build_similarity_loss(opened, SimilarityConfig.for_preset("tiny"), torch.device("cpu"))
    sketch_batch, images = fixed_batch(dataset, sketches, 32, 8, torch.device("cpu"))
    with torch.no_grad():
        before = similarity(images, generator.synthesis(generator.mapping.w_avg.expand(8, -1)))["total"]
        after = similarity(images, generator.synthesis(opened.load(ENCODER)(sketch_batch)))["total"]
    assert after < 0.7 * before


def test_train_encoder_command_refuses_photos_without_sketches_and_writes_nothing(tmp_path) -> None:
    from sketch2medi_fixtures import tiny_bundle, tiny_pairs
    from typer.testing import CliRunner

    from api.cli import app
    from generation.bundle import Bundle

    bundle = tiny_bundle(tmp_path / "bundle")
    dataset, sketches = tiny_pairs(tmp_path, count=4)
    next(sketches.iterdir()).unlink()
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "encoder", "--bundle", str(bundle), "--data", str(dataset),
                                      "--sketches", str(sketches), "--preset", "tiny", "--run-dir", str(run_dir),
                                      "--device", "cpu"])
    assert result.exit_code == 2
    assert "have no sketch" in result.output
    assert not run_dir.exists()
    assert "encoder" not in Bundle.open(bundle).info["networks"]


def test_the_one_pass_l_sim_loop_learns_and_resumes_a_checkpoint_from_before_embedder_side(tmp_path) -> None:
    """E's loop with L_sim's one pass of C per image (the substitute, as the small preset trains) still
    lowers L_sim on tiny data, and a checkpoint written before `embedder_side` existed resumes."""
    import dataclasses

    from sketch2medi_fixtures import tiny_bundle, tiny_pairs

    from generation.bundle import ENCODER, GENERATOR, Bundle
    from generation.e4e.config import EncoderConfig, EncoderTrainConfig
    from generation.e4e.train import train_encoder
    from generation.losses import SimilarityConfig
    from generation.paired import PairedInputs, build_similarity_loss, fixed_batch
    from generation.training import RunOptions

    bundle = tiny_bundle(tmp_path / "bundle")
    dataset, sketches = tiny_pairs(tmp_path)
    options = RunOptions(data=dataset, run_dir=tmp_path / "run", bundle=bundle, device="cpu", progress=False)
    w_dim = Bundle.open(bundle).config(GENERATOR)["w_dim"]
    similarity_config = SimilarityConfig(perceptual_backbone="embedder-substitute")
    networks = (EncoderConfig.for_preset("tiny", w_dim=w_dim), similarity_config)
    config = dataclasses.replace(EncoderTrainConfig.for_preset("tiny"), steps=8)
    train_encoder(options, PairedInputs(sketches), *networks, config)
    checkpoint = options.run_dir / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=False)
    del state["configs"]["similarity"]["embedder_side"]  # as the previous release wrote it
    torch.save(state, checkpoint)
    result = train_encoder(dataclasses.replace(options, resume=True), PairedInputs(sketches), *networks,
                           dataclasses.replace(config, steps=16))
    assert result.step == 16 and result.steps_this_run == 8

    opened = Bundle.open(bundle)
    generator = opened.load(GENERATOR)
    similarity, _ = build_similarity_loss(opened, similarity_config, torch.device("cpu"))
    sketch_batch, images = fixed_batch(dataset, sketches, 32, 8, torch.device("cpu"))
    with torch.no_grad():
        before = similarity(images, generator.synthesis(generator.mapping.w_avg.expand(8, -1)))["total"]
        after = similarity(images, generator.synthesis(opened.load(ENCODER)(sketch_batch)))["total"]
    assert after < 0.8 * before, (float(before), float(after))


def test_train_encoder_reads_embedder_side_and_refuses_a_bad_one(tmp_path) -> None:
    from sketch2medi_fixtures import tiny_bundle, tiny_pairs
    from typer.testing import CliRunner

    from api.cli import app
    from generation.bundle import Bundle

    bundle = tiny_bundle(tmp_path / "bundle")
    dataset, sketches = tiny_pairs(tmp_path, count=4)
    common = ["train", "encoder", "--bundle", str(bundle), "--data", str(dataset), "--sketches", str(sketches),
              "--preset", "tiny", "--device", "cpu", "--steps", "2", "--no-progress"]
    refused = CliRunner().invoke(app, [*common, "--run-dir", str(tmp_path / "bad"), "--embedder-side", "8"])
    assert refused.exit_code == 2, refused.output
    assert "--embedder-side" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "bad").exists()

    done = CliRunner().invoke(app, [*common, "--run-dir", str(tmp_path / "run"), "--embedder-side", "16"])
    assert done.exit_code == 0, done.output
    assert Bundle.open(bundle).info["networks"]["encoder"]["similarity"]["embedder_side"] == 16
