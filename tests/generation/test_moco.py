"""C (MoCo v2): queue, momentum encoder, InfoNCE, SplitBN, probes, training loop, bundle."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from api.cli import app
from generation.bundle import Bundle
from generation.moco import Embedder, EmbedderConfig, MoCo
from generation.moco.augment import MoCoAugment, SensorNoise, TwoViews, Vignetting, WhiteBalance
from generation.moco.model import SplitBatchNorm, info_nce_logits, info_nce_loss
from generation.moco.probe import (
    ProbeSet, compare_with_raw_pixels, knn_predict, linear_probe_predict, paired_margin_interval, per_class_recall,
    span_coordinates,
)
from generation.training import read_jsonl

TINY = EmbedderConfig.for_preset("tiny")


def test_queue_enqueues_and_wraps_around():
    torch.manual_seed(0)
    moco = MoCo(TINY.replace(queue_size=16, batch_size=4, bn_splits=2))
    first, second = F.normalize(torch.randn(10, 128), dim=1), F.normalize(torch.randn(10, 128), dim=1)
    untouched = moco.queue[10:].clone()
    moco.dequeue_and_enqueue(first)
    assert torch.equal(moco.queue[:10], first) and torch.equal(moco.queue[10:], untouched)
    assert moco.queue_ptr.item() == 10
    moco.dequeue_and_enqueue(second)  # 6 slots at the end, then 4 overwrite the oldest at the start
    assert torch.equal(moco.queue[10:], second[:6])
    assert torch.equal(moco.queue[:4], second[6:])
    assert torch.equal(moco.queue[4:10], first[4:])
    assert moco.queue_ptr.item() == 4
    with pytest.raises(ValueError, match="do not fit"):
        moco.dequeue_and_enqueue(torch.randn(17, 128))


def test_key_encoder_moves_by_momentum_rule_and_receives_no_gradient():
    torch.manual_seed(0)
    moco = MoCo(TINY)
    assert all(torch.equal(q, k) for q, k in zip(moco.encoder_q.parameters(), moco.encoder_k.parameters()))
    with torch.no_grad():
        for param in moco.encoder_q.parameters():
            param.add_(torch.randn_like(param))
    before_k = [p.clone() for p in moco.encoder_k.parameters()]
    query = [p.clone() for p in moco.encoder_q.parameters()]
    views = torch.rand(TINY.batch_size, 3, TINY.resolution, TINY.resolution) * 2 - 1
    loss = info_nce_loss(moco(views, views.flip(-1)))  # forward applies one momentum update
    loss.backward()
    m = TINY.momentum
    for old, q, new in zip(before_k, query, moco.encoder_k.parameters()):
        assert torch.allclose(new, m * old + (1 - m) * q, atol=1e-6)
        assert new.grad is None and not new.requires_grad
    assert all(p.grad is not None for p in moco.encoder_q.parameters())


def test_info_nce_lower_for_true_pairs_than_for_shuffled_keys():
    generator = torch.Generator().manual_seed(0)
    queries = F.normalize(torch.randn(32, 128, generator=generator), dim=1)
    queue = F.normalize(torch.randn(256, 128, generator=generator), dim=1)
    matched = info_nce_loss(info_nce_logits(queries, queries, queue, TINY.temperature))
    shuffled = info_nce_loss(info_nce_logits(queries, queries.roll(1, dims=0), queue, TINY.temperature))
    assert matched < shuffled - 1.0


def test_split_batchnorm_normalises_each_split_and_is_plain_bn_in_eval():
    torch.manual_seed(0)
    norm = SplitBatchNorm(3, num_splits=2, affine=False)
    x = torch.randn(8, 3, 4, 4) + torch.tensor([0.0] * 4 + [5.0] * 4).view(8, 1, 1, 1)
    out = norm(x)
    # sub-batches are the interleaved samples 0,2,4,6 and 1,3,5,7 (view over the batch axis)
    for split in (out[0::2], out[1::2]):
        assert torch.allclose(split.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    plain = torch.nn.BatchNorm2d(3, affine=False)
    plain.load_state_dict(norm.state_dict())
    norm.eval(), plain.eval()
    assert torch.allclose(norm(x), plain(x))


def test_embed_is_normalised_float32_batched_and_accepts_other_resolutions():
    torch.manual_seed(0)
    embedder = Embedder(TINY).eval()
    images = torch.rand(7, 3, 2 * TINY.resolution, 2 * TINY.resolution) * 2 - 1
    vectors = embedder.embed(images, batch_size=3)
    assert vectors.shape == (7, TINY.feature_dim) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(7), atol=1e-5)
    assert not vectors.requires_grad
    assert torch.allclose(vectors, embedder.embed(images, batch_size=7), atol=1e-5)
    x = images.clone().requires_grad_()
    embedder(x).sum().backward()  # forward keeps gradients for L_cos
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        embedder.embed(torch.rand(2, 1, 32, 32))


def test_augmentations_make_distinct_views_in_range_without_grayscale():
    torch.manual_seed(0)
    red = torch.zeros(3, TINY.resolution, TINY.resolution)
    red[0] = 0.8  # a saturated red image in [-1, 1]
    red[1:] = -0.6
    views = TwoViews([red], MoCoAugment(TINY))
    first, second = views[0]
    assert first.shape == red.shape and first.min() >= -1 and first.max() <= 1
    assert not torch.equal(first, second)
    samples = torch.stack([views[0][0] for _ in range(20)])
    assert (samples[:, 0] > samples[:, 1] + 0.5).float().mean() > 0.95  # red stays red: colour carries diagnosis


def test_acquisition_nuisances_follow_the_camera_model():
    torch.manual_seed(0)
    grey = torch.full((3, 16, 16), 0.5)
    balanced = torch.stack([WhiteBalance(0.07)(grey) for _ in range(200)])
    red_gain, blue_gain = balanced[:, 0, 0, 0] / 0.5, balanced[:, 2, 0, 0] / 0.5
    assert torch.allclose(red_gain - 1, 1 - blue_gain, atol=1e-6)  # warmer = redder and less blue
    assert red_gain.min() >= 0.93 - 1e-6 and red_gain.max() <= 1.07 + 1e-6 and red_gain.std() > 0.02
    assert torch.equal(balanced[:, 1], torch.full_like(balanced[:, 1], 0.5))  # green untouched
    vignetted = Vignetting(0.4, 17)(torch.ones(3, 17, 17))
    assert vignetted[0, 8, 8] == 1.0 and vignetted[0, 0, 0] >= 0.6 and vignetted[0, 0, 0] < vignetted[0, 0, 8] <= 1.0
    noisy = torch.stack([SensorNoise(0.03)(grey) - grey for _ in range(50)])
    assert 0.005 < noisy.std() < 0.03


def test_acquisition_nuisances_are_switched_on_by_the_config():
    plain = MoCoAugment(TINY.replace(white_balance_gain=0.0, vignetting_max=0.0, rotation_degrees=0.0, noise_sigma_max=0.0))
    full = MoCoAugment(TINY.replace(white_balance_gain=0.07, vignetting_max=0.4, rotation_degrees=7.0, noise_sigma_max=0.03))
    def kinds(augment):
        return {type(step).__name__ for step in augment.transform.transforms}
    assert {"WhiteBalance", "Vignetting", "SensorNoise", "RandomRotation"} <= kinds(full)
    assert not {"WhiteBalance", "Vignetting", "SensorNoise", "RandomRotation"} & kinds(plain)


def test_probes_find_separable_classes_and_span_coordinates_keep_inner_products():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    centres = torch.randn(3, 40, generator=generator) * 3
    features = centres[labels] + torch.randn(60, 40, generator=generator)
    bank, queries = features[:45], features[45:]
    assert torch.equal(knn_predict(bank, labels[:45], queries, k=5, temperature=0.1, num_classes=3), labels[45:])
    shuffled = labels[torch.randperm(60, generator=generator)]
    shuffled_knn = knn_predict(bank, shuffled[:45], queries, k=5, temperature=0.1, num_classes=3)
    assert (shuffled_knn == shuffled[45:]).float().mean() < 0.75
    assert torch.equal(linear_probe_predict(bank, labels[:45], queries, labels[45:], 3, (1e-3,), 50), labels[45:])

    wide_train, wide_test = torch.randn(20, 300, generator=generator), torch.randn(5, 300, generator=generator)
    train_coords, test_coords = span_coordinates(wide_train, wide_test)
    assert train_coords.shape[1] <= 20
    assert torch.allclose(train_coords @ test_coords.t(), wide_train @ wide_test.t(), atol=1e-3)


def test_per_class_recall_counts_each_class_and_skips_absent_ones():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    predictions = torch.tensor([0, 0, 1, 1, 1, 0])
    assert per_class_recall(predictions, labels, num_classes=3) == [0.5, 0.5, None]


def test_report_finds_where_an_embedding_loses_to_the_pixels():
    """Class 1 differs from class 0 only by one bright pixel: the pixels' linear probe sees it,
    an embedding of the mean colour does not, and the report's recalls and margin say so."""
    generator = torch.Generator().manual_seed(0)

    def images(labels: torch.Tensor) -> torch.Tensor:
        batch = torch.rand(len(labels), 3, 8, 8, generator=generator) * 0.2 - 0.1 + (labels == 2).view(-1, 1, 1, 1) * 0.8
        batch[labels == 1, :, 3, 3] = 1.0
        return batch

    bank_labels, query_labels = torch.arange(90) % 3, torch.arange(30) % 3
    probe = ProbeSet(
        images(bank_labels), images(query_labels), {"finding": bank_labels}, {"finding": query_labels},
        {"finding": ["clear", "spot", "bright"]},
    )
    mean_colour = lambda batch: batch.mean(dim=(2, 3))  # noqa: E731
    (report,) = compare_with_raw_pixels(mean_colour, probe, k=5, temperature=0.1)
    assert report.column == "finding" and report.queries == 30 and report.chance == pytest.approx(1 / 3)
    assert report.pixel_linear == 1.0 and report.pixel_linear_recall == [1.0, 1.0, 1.0]
    assert report.embedding_knn_recall[2] == 1.0 and report.embedding_knn < 0.9
    assert report.margin == pytest.approx(report.embedding_knn - 1.0) and report.margin < 0
    low, high = report.margin_interval
    assert low <= report.margin <= high < 0 and not report.clearly_beats_pixels


def test_paired_interval_separates_a_clear_win_from_query_noise():
    labels = torch.zeros(1000, dtype=torch.long)
    ours = torch.zeros(1000, dtype=torch.long)
    ours[:40] = 1  # 0.960 correct
    theirs = torch.zeros(1000, dtype=torch.long)
    theirs[960:] = 1  # also 0.960, but on other queries
    low, high = paired_margin_interval(ours, theirs, labels)
    assert low < 0 < high and high - low > 0.02  # 40 wins and 40 losses: noise, not a win
    theirs[900:960] = 1  # now 0.900: ours wins on 60 queries, loses on none
    low, high = paired_margin_interval(ours, theirs, labels)
    assert 0.03 < low < 0.06 < high < 0.09


def test_sgd_steps_on_the_query_encoder_lower_the_info_nce_loss():
    """The loss is wired to the query encoder: a few steps against fixed keys and queue lower it."""
    torch.manual_seed(0)
    moco = MoCo(TINY)
    augment = MoCoAugment(TINY)
    images = torch.rand(TINY.batch_size, 3, TINY.resolution, TINY.resolution) * 2 - 1
    view_q = torch.stack([augment(image) for image in images])
    view_k = torch.stack([augment(image) for image in images])
    keys = moco.encode_keys(view_k)
    queue = moco.queue.clone()
    optimizer = torch.optim.SGD(moco.encoder_q.parameters(), lr=TINY.learning_rate, momentum=TINY.sgd_momentum)
    losses = []
    for _ in range(6):
        loss = info_nce_loss(info_nce_logits(moco.encoder_q(view_q), keys, queue, TINY.temperature))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


def test_train_command_logs_probes_resumes_and_exports_bundle(tiny_phantoms, tmp_path):
    runner = CliRunner()
    run_dir, bundle = tmp_path / "run", tmp_path / "bundle"
    common = ["train", "embedder", "--data", str(tiny_phantoms), "--preset", "tiny", "--run-dir", str(run_dir), "--log-every", "1"]
    first = runner.invoke(app, [*common, "--max-steps", "2"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(
        app, [*common, "--max-steps", "3", "--resume", "--bundle", str(bundle), "--perceptual-backbone", "random-plumbing"]
    )
    assert second.exit_code == 0, second.output
    records = read_jsonl(run_dir / "log.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    baselines = next(r for r in records if r.get("event") == "probe_baselines")
    assert {"diagnosis/pixel_linear", "tonsil_grade/pixel_knn", "diagnosis/chance"} <= set(baselines)
    assert any("diagnosis/embedding_knn" in r for r in records)
    assert (run_dir / "checkpoint.pt").exists() and (run_dir / "samples" / "views.png").exists()

    info = json.loads((bundle / "bundle.json").read_text())["networks"]["embedder"]
    assert info["steps"] == 3 and info["perceptual_backbone"] == "random-plumbing"
    assert "diagnosis/embedding_knn" in info["probe"]
    embedder = Bundle.open(bundle).load_embedder()
    assert not embedder.training and not any(p.requires_grad for p in embedder.parameters())
    images = torch.rand(3, 3, TINY.resolution, TINY.resolution) * 2 - 1
    vectors = embedder.embed(images)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert embedder.trunk.stem[0].weight.is_contiguous(memory_format=torch.channels_last)  # the faster CPU layout
    plain = Bundle.open(bundle).load("embedder")
    assert torch.allclose(embedder.describe(images), plain.describe(images), atol=1e-5)

    changed = runner.invoke(app, [*common, "--max-steps", "4", "--resume", "--learning-rate", "0.5"])
    assert changed.exit_code == 2 and "another EmbedderConfig (learning_rate)" in changed.output

    finer = runner.invoke(app, [*common[:6], "--run-dir", str(tmp_path / "finer"), "--max-steps", "1", "--resolution", "48",
                                "--bundle", str(tmp_path / "finer-bundle")])
    assert finer.exit_code == 0, finer.output
    assert Bundle.open(tmp_path / "finer-bundle").load_embedder().config.resolution == 48


def test_warm_start_copies_a_bundles_c_into_both_trunks_and_refuses_another_architecture(tiny_phantoms, tmp_path):
    from generation.bundle import save_network

    torch.manual_seed(1)
    source = Embedder(TINY)
    save_network(tmp_path / "source", "embedder", source, TINY, steps=7, data_fingerprint="abc")
    runner = CliRunner()
    common = ["train", "embedder", "--data", str(tiny_phantoms), "--preset", "tiny", "--max-steps", "1", "--learning-rate", "0"]
    warm = runner.invoke(app, [*common, "--run-dir", str(tmp_path / "warm"), "--resolution", "48",
                               "--warm-start", str(tmp_path / "source"), "--bundle", str(tmp_path / "out")])
    assert warm.exit_code == 0, warm.output
    continued = Bundle.open(tmp_path / "out").load_embedder()
    assert continued.config.resolution == 48
    assert torch.equal(continued.trunk.stem[0].weight, source.trunk.stem[0].weight)  # lr 0: the copied weights
    record = json.loads((tmp_path / "out" / "bundle.json").read_text())["networks"]["embedder"]
    assert record["warm_started_from"] == {"bundle": str(tmp_path / "source"), "resolution": TINY.resolution,
                                           "steps": 7, "data_fingerprint": "abc"}
    # the training loop's probe and evaluate-embedder read the data at its own side, not C's 48 px
    baselines = next(r for r in read_jsonl(tmp_path / "warm" / "log.jsonl") if r.get("event") == "probe_baselines")
    evaluated = runner.invoke(app, ["evaluate-embedder", "--data", str(tiny_phantoms), "--model", str(tmp_path / "out"),
                                    "--report", str(tmp_path / "report.json")])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["data_side"] == TINY.resolution and report["embedder_side"] == 48
    assert report["columns"][0]["pixel_linear"] == pytest.approx(baselines["diagnosis/pixel_linear"])
    key_trunk = torch.load(tmp_path / "warm" / "checkpoint.pt", weights_only=False)["modules"]["moco"]
    assert torch.allclose(key_trunk["encoder_k.trunk.stem.0.weight"], source.trunk.stem[0].weight, atol=1e-6)

    cifar = TINY.replace(stem="cifar")
    save_network(tmp_path / "cifar", "embedder", Embedder(cifar), cifar)
    refused = runner.invoke(app, [*common, "--run-dir", str(tmp_path / "refused"), "--warm-start", str(tmp_path / "cifar")])
    assert refused.exit_code == 2 and "differs in stem" in refused.output


def test_evaluate_embedder_reports_per_class_recall_and_rejects_bad_input(tiny_phantoms, tmp_path):
    from generation.bundle import save_network

    torch.manual_seed(0)
    bundle = tmp_path / "bundle"
    save_network(bundle, "embedder", Embedder(TINY), TINY, data_fingerprint="not-these-images")
    runner = CliRunner()
    report_path = tmp_path / "report.json"
    result = runner.invoke(app, ["evaluate-embedder", "--data", str(tiny_phantoms), "--model", str(bundle), "--report", str(report_path)])
    assert result.exit_code == 0, result.output
    assert "different file names or sizes" in result.output and "recall per class" in result.output
    report = json.loads(report_path.read_text())
    assert [c["column"] for c in report["columns"]] == ["diagnosis", "tonsil_grade"]
    diagnosis = report["columns"][0]
    assert len(diagnosis["embedding_knn_recall"]) == len(diagnosis["classes"])
    assert diagnosis["margin"] == pytest.approx(diagnosis["embedding_knn"] - diagnosis["pixel_linear"])
    assert diagnosis["margin_interval"][0] <= diagnosis["margin"] <= diagnosis["margin_interval"][1]
    assert diagnosis["clearly_beats_pixels"] == (diagnosis["margin_interval"][0] > 0)
    assert 0.0 <= diagnosis["pixel_linear"] <= 1.0 and report["bank"] == TINY.probe_bank_size
    assert report["data_side"] == report["embedder_side"] == TINY.resolution

    unknown_column = runner.invoke(app, ["evaluate-embedder", "--data", str(tiny_phantoms), "--model", str(bundle), "--label-columns", "blood_type"])
    assert unknown_column.exit_code == 2 and "blood_type" in unknown_column.output
    no_embedder = runner.invoke(app, ["evaluate-embedder", "--data", str(tiny_phantoms), "--model", str(tmp_path / "empty")])
    assert no_embedder.exit_code == 2 and "is not a model bundle" in no_embedder.output
    (tmp_path / "no-images").mkdir()
    no_images = runner.invoke(app, ["evaluate-embedder", "--data", str(tmp_path / "no-images"), "--model", str(bundle)])
    assert no_images.exit_code == 2 and "error:" in no_images.output
    (tmp_path / "corrupt" / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        (tmp_path / "corrupt" / "images" / name).write_bytes(b"not a png")
    corrupt = runner.invoke(app, ["evaluate-embedder", "--data", str(tmp_path / "corrupt"), "--model", str(bundle)])
    assert corrupt.exit_code == 2 and "error:" in corrupt.output
