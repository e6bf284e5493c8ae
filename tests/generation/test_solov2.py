"""SOLOv2 sketch synthesizer S: targets, Matrix NMS, inference edge cases, sketches, DICE, bundles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from formats.sketch import BlankSketchError
from generation.configs import config_from_dict
from generation.solov2.config import SynthesizerConfig
from generation.solov2.data import Augmentation
from generation.solov2.instances import Instance
from generation.solov2.losses import solov2_loss
from generation.solov2.metrics import class_dice, mean_class_dice
from generation.bundle import SYNTHESIZER, Bundle
from generation.solov2.model import SOLOv2, sketch_from_instances
from generation.solov2.train import save_synthesizer
from generation.solov2.nms import MatrixNMS
from generation.solov2.targets import assign_targets

TINY = SynthesizerConfig.for_preset("tiny")  # 32 px, grids (8, 6, 4), scale ranges 0-1/4, 1/8-1/2, 1/4-2


def box_mask(top: int, left: int, height: int, width: int, size: int = 32) -> torch.Tensor:
    mask = torch.zeros((size, size), dtype=torch.bool)
    mask[top : top + height, left : left + width] = True
    return mask


def positive_cells(level_targets) -> set[tuple[int, int]]:
    grid = level_targets.labels.shape[0]
    return {(int(i) // grid, int(i) % grid) for i in torch.nonzero(level_targets.positive).flatten()}


def test_small_instance_goes_to_fine_levels_at_its_centre_cell() -> None:
    # 6x6 box: sqrt(area)/R = 0.1875 lies in levels 0 (0-0.25) and 1 (0.125-0.5), not level 2.
    # Centre of mass (x 7, y 23): level 0 (8x8 grid, 4 px cells) -> row 5, col 1; level 1 (6x6) -> row 4, col 1.
    targets = assign_targets(torch.tensor([3]), box_mask(20, 4, 6, 6)[None], TINY)
    assert positive_cells(targets[0]) == {(5, 1)}
    assert positive_cells(targets[1]) == {(4, 1)}
    assert positive_cells(targets[2]) == set()
    assert targets[0].labels[5, 1] == 3 and int(targets[0].labels.sum()) == 3
    # its mask target is the box at half resolution (mask stride 2)
    assert torch.equal(targets[0].masks[0].bool(), box_mask(10, 2, 3, 3, size=16))


def test_large_instance_region_is_clipped_to_three_by_three_cells() -> None:
    # Full image: scale 1.0 -> level 2 only; sigma region 0.2 * 32 = 6.4 px around (16, 16),
    # on a 4x4 grid of 8 px cells -> rows and cols 1..2. A level-0 style tall thin box whose
    # sigma region spans many rows must stay within one cell of its centre cell.
    targets = assign_targets(torch.tensor([4]), box_mask(0, 0, 32, 32)[None], TINY)
    assert positive_cells(targets[2]) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert positive_cells(targets[0]) == positive_cells(targets[1]) == set()

    config = dataclasses.replace(TINY, centre_sigma=1.0)
    tall = box_mask(0, 14, 32, 2)  # scale sqrt(64)/32 = 0.25: levels 0, 1 and 2
    rows = {row for row, _ in positive_cells(assign_targets(torch.tensor([1]), tall[None], config)[0])}
    assert rows == {3, 4, 5}  # centre row 4 of 8, clipped to +-1 although the region covers all rows


def test_smaller_instance_keeps_a_contested_cell() -> None:
    big, small = box_mask(0, 0, 16, 16), box_mask(6, 6, 4, 4)  # both centred on level-0 cell (1, 1)
    targets = assign_targets(torch.tensor([2, 1]), torch.stack([big, small]), TINY)
    assert targets[0].labels[1, 1] == 1


def test_matrix_nms_suppresses_a_duplicate_and_keeps_distinct_masks() -> None:
    a = box_mask(2, 2, 10, 10)
    near_copy = box_mask(2, 3, 10, 10)  # IoU 0.82 with a
    distinct = box_mask(18, 18, 10, 10)
    masks = torch.stack([a, near_copy, distinct, a])
    labels = torch.tensor([0, 0, 0, 1])  # the last is a's shape but another class
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    decayed = MatrixNMS("gaussian", 2.0)(masks, labels, scores)
    assert decayed[0] == pytest.approx(0.9)
    assert decayed[1] < TINY.score_threshold  # the duplicate falls below the paper's 0.35 cut
    assert decayed[2] == pytest.approx(0.7)
    assert decayed[3] == pytest.approx(0.6)
    linear = MatrixNMS("linear", 2.0)(masks, labels, scores)
    assert linear[1] < 0.2 and linear[2] == pytest.approx(0.7)


def test_untrained_losses_are_finite_and_empty_batches_work() -> None:
    torch.manual_seed(0)
    model = SOLOv2(TINY)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with_objects = assign_targets(torch.tensor([1, 4]), torch.stack([box_mask(4, 4, 6, 6), box_mask(10, 2, 20, 28)]), TINY)
    empty = assign_targets(torch.zeros(0, dtype=torch.long), torch.zeros((0, 32, 32), dtype=torch.bool), TINY)
    losses = solov2_loss(*model(images), [with_objects, empty], TINY)
    assert torch.isfinite(losses["loss"]) and losses["loss_mask"] > 0
    none = solov2_loss(*model(images), [empty, empty], TINY)
    assert torch.isfinite(none["loss"]) and none["loss_mask"] == 0
    none["loss"].backward()  # gradient reaches the kernel branch even with no instance


def test_predict_on_black_image_returns_no_instance() -> None:
    torch.manual_seed(0)
    model = SOLOv2(TINY).eval()
    # Make every cell fire (category bias high) while the masks stay empty: the path where
    # candidates exist but none has pixels must end in "no instance", not an error.
    torch.nn.init.constant_(model.head.category_out.bias, 5.0)
    torch.nn.init.zeros_(model.head.kernel_out.weight)
    torch.nn.init.zeros_(model.head.kernel_out.bias)
    black = -torch.ones(2, 3, 48, 48)  # also not at model resolution
    assert model.predict(black) == [[], []]
    assert model.predict(black, score_threshold=0.0) == [[], []]
    with pytest.raises(ValueError, match="images"):
        model.predict(torch.zeros(3, 32, 32))
    with pytest.raises(BlankSketchError):
        model.synthesize_sketch(np.zeros((32, 32, 3), dtype=np.uint8))


def test_predicted_masks_come_back_at_input_size_with_paper_threshold() -> None:
    torch.manual_seed(0)
    model = SOLOv2(TINY).eval()
    torch.nn.init.constant_(model.head.category_out.bias, 5.0)  # every cell scores ~0.99
    with torch.no_grad():
        model.head.kernel_out.bias.fill_(1.0)  # kernels of ones: masks = sigmoid(sum of F) > 0.5 where F > 0
    instances = model.predict(torch.rand(1, 3, 40, 40) * 2 - 1, score_threshold=0.0)[0]
    assert instances, "a firing head must yield instances"
    assert all(i.mask.shape == (40, 40) and i.mask.dtype == bool for i in instances)
    assert all(i.category in TINY.category_ids for i in instances)
    scores = [i.score for i in instances]
    assert scores == sorted(scores, reverse=True) and len(instances) <= TINY.max_instances
    # identical masks of one class are decayed by Matrix NMS: at most one per class survives 0.35
    confident = model.predict(torch.rand(1, 3, 40, 40) * 2 - 1)[0]
    assert len({i.category for i in confident}) == len(confident)


def test_sketch_of_instances_equals_contour_sketch_of_the_same_masks() -> None:
    from formats.contours import contour_sketch_from_masks

    masks = np.stack([box_mask(2, 2, 10, 12).numpy(), box_mask(16, 8, 12, 16).numpy(), box_mask(4, 20, 6, 6).numpy()])
    instances = [Instance(2, 0.9, masks[0]), Instance(4, 0.5, masks[1]), Instance(1, 0.2, masks[2])]
    sketch = sketch_from_instances(instances, threshold=0.35)
    assert np.array_equal(sketch, contour_sketch_from_masks(masks[:2]))  # the 0.2 mask is dropped
    assert not np.array_equal(sketch, contour_sketch_from_masks(masks))
    with pytest.raises(BlankSketchError):
        sketch_from_instances(instances, threshold=0.95)


def test_class_dice_scores_unions_per_category() -> None:
    left, right = box_mask(0, 0, 8, 8).numpy(), box_mask(0, 16, 8, 8).numpy()
    half_right = box_mask(0, 16, 8, 4).numpy()
    wall = box_mask(20, 0, 10, 10).numpy()
    reference = [Instance(3, 1.0, left), Instance(3, 1.0, right), Instance(2, 1.0, wall)]
    predicted = [Instance(3, 0.9, left | half_right), Instance(1, 0.8, wall)]
    scores = class_dice(predicted, reference)
    assert scores[3] == pytest.approx(2 * 96 / (96 + 128))  # both tonsils scored together
    assert scores[2] == 0.0 and scores[1] == 0.0  # missed class and hallucinated class
    assert 4 not in scores
    assert class_dice(reference, reference) == {2: 1.0, 3: 1.0}
    assert class_dice([], []) == {}
    summary = mean_class_dice([{2: 1.0, 3: 0.5}, {3: 1.0}])
    assert summary == {"2": 1.0, "3": 0.75, "mean": 0.875}
    with pytest.raises(ValueError, match="masks"):
        class_dice([Instance(1, 1.0, np.ones((4, 4), bool))], [Instance(1, 1.0, np.ones((5, 5), bool))])


def test_augmentation_keeps_masks_on_their_pixels() -> None:
    torch.manual_seed(3)
    mask = box_mask(4, 2, 10, 6)
    image = torch.where(mask, 1.0, -1.0).expand(3, -1, -1).clone()  # white object on black
    augment = Augmentation(flip_probability=1.0, scale_range=(1.25, 1.25), colour_jitter=0.0)
    new_image, new_masks = augment(image, mask[None])
    assert new_image.shape == (3, 32, 32) and new_masks.shape == (1, 32, 32)
    bright = new_image[0] > 0
    iou = (bright & new_masks[0]).sum() / (bright | new_masks[0]).sum()
    assert iou > 0.9  # the zoomed, flipped mask still covers the object (edges are interpolated)
    assert new_masks[0].sum() > mask.sum()  # zoomed in by 1.25
    assert new_masks[0, :, 16:].sum() > new_masks[0, :, :16].sum()  # object moved to the right half


def test_config_round_trips_and_rejects_bad_values() -> None:
    for preset in ("tiny", "small", "paper"):
        config = SynthesizerConfig.for_preset(preset)
        assert config_from_dict(SynthesizerConfig, dataclasses.asdict(config)) == config
    with pytest.raises(ValueError, match="preset"):
        SynthesizerConfig.for_preset("huge")
    with pytest.raises(ValueError, match="multiple"):
        dataclasses.replace(TINY, resolution=40)
    with pytest.raises(ValueError, match="does not know the fields"):
        config_from_dict(SynthesizerConfig, {**dataclasses.asdict(TINY), "colour": 1})


def test_bundle_round_trip_gives_the_same_predictions(tmp_path) -> None:
    torch.manual_seed(1)
    model = SOLOv2(TINY).eval()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    save_synthesizer(tmp_path, model, steps=0)
    loaded = Bundle.open(tmp_path).load(SYNTHESIZER)
    assert loaded.config == TINY
    with torch.no_grad():
        assert torch.allclose(model(images)[2], loaded(images)[2])
