"""L_sim: zero for identical images, symmetric, growing with noise; LPIPS built offline."""

from __future__ import annotations

import socket

import pytest
import torch
import torchvision

from generation.losses import (
    SimilarityConfig, SimilarityLoss, build_perceptual, imagenet_checkpoint_path,
)
from generation.moco import Embedder, EmbedderConfig

RESOLUTION = 32


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    torch.manual_seed(0)
    return Embedder(EmbedderConfig.for_preset("tiny")).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(4, 3, RESOLUTION, RESOLUTION, generator=generator), 5, 1, 2)
    return smooth * 2 - 1  # [4, 3, 32, 32]


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve or connect fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("backbone", ["random-plumbing", "embedder-substitute"])
def test_similarity_loss_zero_symmetric_and_growing_with_noise(backbone, embedder, images):
    config = SimilarityConfig(perceptual_backbone=backbone)
    loss = SimilarityLoss(config, embedder, build_perceptual(config, embedder))
    same = loss(images, images.clone())
    for name in ("l2", "lpips", "cos", "total"):
        assert same[name].item() == pytest.approx(0.0, abs=1e-5), name

    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(images.shape, generator=generator)
    noisy = images + 0.3 * noise
    forward, backward = loss(images, noisy), loss(noisy, images)
    for name in ("l2", "lpips", "cos", "total"):
        assert forward[name].item() == pytest.approx(backward[name].item(), rel=1e-4), name

    levels = [loss(images, images + sigma * noise) for sigma in (0.05, 0.2, 0.8)]
    for name in ("l2", "lpips", "cos"):
        values = [level[name].item() for level in levels]
        assert values[0] < values[1] < values[2], (name, values)


def test_similarity_loss_is_differentiable_in_x_hat_and_keeps_networks_frozen(embedder, images):
    config = SimilarityConfig(perceptual_backbone="embedder-substitute")
    loss = SimilarityLoss(config, embedder, build_perceptual(config, embedder))
    loss.train()
    x_hat = (images + 0.2).requires_grad_()
    terms = loss(images, x_hat)
    assert set(terms) == {"l2", "lpips", "cos", "total"}
    expected = config.l2 * terms["l2"] + config.lpips * terms["lpips"] + config.cos * terms["cos"]
    assert terms["total"].item() == pytest.approx(expected.item())
    terms["total"].backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in embedder.parameters())
    assert not embedder.training


def test_defaults_are_the_e4e_weights_and_bad_choices_are_refused(embedder):
    config = SimilarityConfig.for_preset("small")
    assert (config.l2, config.lpips, config.cos) == (1.0, 0.8, 0.5)
    assert config.perceptual_backbone == "embedder-substitute"
    with pytest.raises(ValueError, match="perceptual_backbone"):
        SimilarityConfig(perceptual_backbone="alex")
    with pytest.raises(ValueError, match="needs the trained embedder"):
        build_perceptual(config, None)
    with pytest.raises(ValueError, match="cosine term"):
        SimilarityLoss(config, None, build_perceptual(config, embedder))


def test_lpips_construction_never_opens_a_connection(no_network, tmp_path, monkeypatch, images):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    config = SimilarityConfig(perceptual_backbone="alex-imagenet")
    checkpoint = imagenet_checkpoint_path("alex-imagenet")
    assert checkpoint == tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"

    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        build_perceptual(config, None)
    plumbing = build_perceptual(SimilarityConfig(perceptual_backbone="random-plumbing"), None)
    assert not plumbing.is_lpips and "RANDOM" in plumbing.record()["description"]

    # A stand-in checkpoint at the documented path exercises the real loading route offline.
    torch.manual_seed(3)
    reference = torchvision.models.alexnet(weights=None)
    checkpoint.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoint)
    lpips_alex = build_perceptual(config, None)
    assert lpips_alex.is_lpips and lpips_alex.record()["perceptual_backbone"] == "alex-imagenet"
    assert torch.equal(lpips_alex.lpips.net.slice1[0].weight, reference.features[0].weight)
    assert torch.equal(lpips_alex.lpips.net.slice5._modules["10"].weight, reference.features[10].weight)
    assert not any(p.requires_grad for p in lpips_alex.parameters())
    distances = lpips_alex(images, images.flip(-1))
    assert distances.shape == (images.shape[0],) and (distances > 0).all()


def test_one_pass_of_c_per_image_gives_the_loss_of_separate_passes(embedder, images):
    """L_sim reads each image through C once for both C terms, and the real images once for several
    x_hat; the terms and the gradient stay those of running C per term, as the loss was defined."""
    from generation.losses import EmbedderFeatureDistance

    config = SimilarityConfig(perceptual_backbone="embedder-substitute")
    loss = SimilarityLoss(config, embedder, build_perceptual(config, embedder))
    generator = torch.Generator().manual_seed(4)
    x_hat = (images + 0.3 * torch.randn(images.shape, generator=generator)).requires_grad_()

    expected = {"l2": torch.nn.functional.mse_loss(x_hat, images),
                "lpips": EmbedderFeatureDistance(embedder)(images, x_hat).mean(),
                "cos": (1 - (embedder(images) * embedder(x_hat)).sum(dim=1)).mean()}
    expected_total = config.l2 * expected["l2"] + config.lpips * expected["lpips"] + config.cos * expected["cos"]
    (expected_grad,) = torch.autograd.grad(expected_total, x_hat)

    target = loss.target(images)
    assert not target.vector.requires_grad and not any(f.requires_grad for f in target.features)
    for _ in range(2):  # a target serves several x_hat (H's T steps)
        terms = loss.compare(target, x_hat)
        for name, value in expected.items():
            assert terms[name].item() == pytest.approx(value.item(), rel=1e-6), name
        (grad,) = torch.autograd.grad(terms["total"], x_hat)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-8)
    assert loss(images, x_hat)["total"].item() == pytest.approx(expected_total.item(), rel=1e-6)


def test_embedder_side_reads_c_at_that_side_and_bad_sides_are_refused(embedder, images):
    from generation.data import box_resize

    side = 16  # the tiny C was trained at 32 px
    config = SimilarityConfig(perceptual_backbone="embedder-substitute", embedder_side=side)
    loss = SimilarityLoss(config, embedder, build_perceptual(config, embedder))
    noisy = images.flip(-1)
    vector = lambda x: torch.nn.functional.normalize(embedder.trunk(box_resize(x, side)), dim=1)  # noqa: E731
    with torch.no_grad():
        terms = loss(images, noisy)
        assert terms["cos"].item() == pytest.approx((1 - (vector(images) * vector(noisy)).sum(dim=1)).mean().item(), rel=1e-6)
        assert terms["cos"].item() != pytest.approx(SimilarityLoss(
            SimilarityConfig(perceptual_backbone="embedder-substitute"), embedder,
            build_perceptual(config, embedder))(images, noisy)["cos"].item(), rel=1e-3)
    assert loss.record()["embedder_side"] == side
    for bad in (8, 0, -64, 4096):
        with pytest.raises(ValueError, match="--embedder-side"):
            SimilarityConfig(embedder_side=bad)
