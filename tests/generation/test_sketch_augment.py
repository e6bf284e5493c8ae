"""Free-hand augmentation of training sketches, and warm-starting E and H from another bundle."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from formats.contours import contour_sketch
from formats.sketch import INK_THRESHOLD, canonical_sketch
from generation.sketch_augment import SketchAugmentConfig, freehand_augment


def _contour(side: int = 64) -> np.ndarray:

    mask = np.zeros((side, side), np.uint8)
    yy, xx = np.mgrid[:side, :side]
    mask[((yy - 20) ** 2 + (xx - 32) ** 2) < 8 ** 2] = 1
    mask[((yy - 44) ** 2 + (xx - 18) ** 2) < 7 ** 2] = 2
    mask[((yy - 44) ** 2 + (xx - 46) ** 2) < 7 ** 2] = 3
    return contour_sketch(mask)


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    ia, ib = a < INK_THRESHOLD, b < INK_THRESHOLD
    return float(distance_transform_edt(~ib)[ia].mean() + distance_transform_edt(~ia)[ib].mean())


def test_augmented_sketches_are_canonical_varied_and_stay_near_the_outline() -> None:
    sketch = _contour()
    outs = [freehand_augment(sketch, np.random.default_rng(seed)) for seed in range(12)]
    for out in outs:
        assert out.shape == sketch.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(canonical_sketch(out, 64), out)  # already in the canonical form
        near = distance_transform_edt(sketch >= INK_THRESHOLD)[out < INK_THRESHOLD]
        assert near.mean() < 5.0  # the ink stays near the outline (objects may be left out)
    assert np.mean([_chamfer(out, sketch) for out in outs]) > 0.5  # it does change the sketch
    assert len({out.tobytes() for out in outs}) == len(outs)


def test_no_distortion_gives_back_the_contour_within_a_pixel() -> None:
    sketch = _contour()
    still = SketchAugmentConfig(shift=0, scale=0, rotation_deg=0, object_shift=0, deformation=0, wobble=0,
                                simplification=0, omission=0, retrace=0, gaps=0, canvas_sides=(256,))
    out = freehand_augment(sketch, np.random.default_rng(0), still)
    assert _chamfer(out, sketch) < 1.0


def _train_tiny_encoder(bundle, dataset, run_dir, config, sketches, **paired):  # type: ignore[no-untyped-def]
    from generation.bundle import GENERATOR, Bundle
    from generation.e4e.config import EncoderConfig
    from generation.e4e.train import train_encoder
    from generation.losses import SimilarityConfig
    from generation.paired import PairedInputs
    from generation.training import RunOptions

    options = RunOptions(data=dataset, run_dir=run_dir, bundle=bundle, device="cpu", progress=False)
    encoder_config = EncoderConfig.for_preset("tiny", w_dim=Bundle.open(bundle).config(GENERATOR)["w_dim"])
    return train_encoder(options, PairedInputs(sketches, **paired), encoder_config, SimilarityConfig.for_preset("tiny"),
                         config)


def test_warm_started_augmented_encoder_run_starts_from_the_other_bundle_and_records_it(tmp_path) -> None:
    from sketch2medi_fixtures import tiny_bundle, tiny_pairs

    from generation.bundle import ENCODER, Bundle
    from generation.e4e.config import EncoderTrainConfig
    from generation.sketch_augment import FREEHAND_AUGMENT
    from generation.training import read_jsonl

    dataset, sketches = tiny_pairs(tmp_path)
    source = tiny_bundle(tmp_path / "source")
    config = dataclasses.replace(EncoderTrainConfig.for_preset("tiny"), steps=12)
    _train_tiny_encoder(source, dataset, tmp_path / "r0", config, sketches)
    target = tiny_bundle(tmp_path / "target")
    one_logged_step = dataclasses.replace(config, steps=1, cadence=dataclasses.replace(config.cadence, log_every=1))
    _train_tiny_encoder(target, dataset, tmp_path / "r1", one_logged_step, sketches,
                        warm_start=source, sketch_augment=FREEHAND_AUGMENT)
    _train_tiny_encoder(tiny_bundle(tmp_path / "fresh"), dataset, tmp_path / "r2",
                        one_logged_step, sketches, sketch_augment=FREEHAND_AUGMENT)

    def first_loss(run: str) -> float:
        return [r["sim_total"] for r in read_jsonl(tmp_path / run / "log.jsonl") if "sim_total" in r][0]

    trained_loss = [r["sim_total"] for r in read_jsonl(tmp_path / "r0" / "log.jsonl") if "sim_total" in r][-1]
    assert first_loss("r1") < first_loss("r2")  # it starts where the source's E was, not from scratch
    assert first_loss("r1") < 1.5 * trained_loss
    entry = Bundle.open(target).entry(ENCODER)
    assert entry["warm_started_from"]["steps"] == 12
    assert entry["sketch_augment"]["probability"] == FREEHAND_AUGMENT.probability


def test_warm_start_refuses_a_bundle_of_another_preset(tmp_path) -> None:
    import pytest

    from sketch2medi_fixtures import tiny_bundle, tiny_pairs

    from formats.errors import InputError
    from generation.e4e.config import EncoderTrainConfig
    from generation.presets import SHIPPED_BUNDLE

    dataset, sketches = tiny_pairs(tmp_path)
    with pytest.raises(InputError, match="warm-start"):
        _train_tiny_encoder(tiny_bundle(tmp_path / "b"), dataset, tmp_path / "run",
                            dataclasses.replace(EncoderTrainConfig.for_preset("tiny"), steps=1), sketches,
                            warm_start=SHIPPED_BUNDLE)
    assert not (tmp_path / "run").exists()
