"""The phantom renderer: determinism, instances per class, occlusion, tissue-like appearance."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from formats.categories import PHARYNGEAL_WALL, TONGUE, TONSIL, UVULA
from phantoms.params import BRODSKY_GRADES, DIAGNOSES, diagnose, sample_params
from phantoms.render import render_case, render_params

SIZE = 64
CASES = 60


@pytest.fixture(scope="module")
def cases():
    return [render_case(11, index, SIZE) for index in range(CASES)]


def test_same_seed_and_index_give_the_same_case_and_others_differ():
    first, again, other = render_case(5, 3, SIZE), render_case(5, 3, SIZE), render_case(5, 4, SIZE)
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.instance_mask, again.instance_mask)
    assert first.metadata == again.metadata
    assert not np.array_equal(first.image, other.image)
    assert first.image.shape == (SIZE, SIZE, 3) and first.image.dtype == np.uint8
    assert first.instance_mask.shape == (SIZE, SIZE) and first.instance_mask.dtype == np.uint8


def test_each_case_has_one_wall_uvula_tongue_and_tonsils_by_grade(cases):
    grade0_tonsil_counts = Counter()
    for case in cases:
        per_class = Counter(instance.category_id for instance in case.instances)
        assert per_class[PHARYNGEAL_WALL] == per_class[UVULA] == per_class[TONGUE] == 1
        tonsils = per_class[TONSIL]
        if case.params.tonsil_grade >= 1:
            assert tonsils == 2, f"grade {case.params.tonsil_grade} case must show both tonsils"
        else:
            assert tonsils <= 2 - sum(case.params.tonsil_hidden)
            grade0_tonsil_counts[tonsils] += 1
        ids = [instance.instance_id for instance in case.instances]
        assert ids == list(range(1, len(ids) + 1))
        assert set(np.unique(case.instance_mask)) == {0, *ids}
    assert sum(grade0_tonsil_counts.values()) > 0, "the sample must contain grade-0 cases"
    assert len(grade0_tonsil_counts) > 1, "grade 0 must sometimes hide a tonsil and sometimes show it"


def test_tonsils_lie_left_and_right_of_the_uvula(cases):
    for case in cases:
        tonsil_ids = [i.instance_id for i in case.instances if i.category_id == TONSIL]
        if len(tonsil_ids) < 2 or case.params.tonsil_grade < 2:
            continue
        uvula_id = next(i.instance_id for i in case.instances if i.category_id == UVULA)
        centre_x = [np.nonzero(case.instance_mask == iid)[1].mean() for iid in (*tonsil_ids, uvula_id)]
        assert centre_x[0] < centre_x[2] < centre_x[1]


def test_all_grades_and_diagnoses_occur():
    params = [sample_params(np.random.default_rng([0, i])) for i in range(400)]
    assert {p.tonsil_grade for p in params} == set(BRODSKY_GRADES)
    assert {diagnose(p) for p in params} == set(DIAGNOSES)


def test_occlusion_tongue_and_uvula_cover_the_wall(cases):
    params = cases[0].params
    def wall_and(params, category):
        _, mask, instances = render_params(params, SIZE, np.random.default_rng(0))
        ids = {i.category_id: i.instance_id for i in instances}
        return int((mask == ids[PHARYNGEAL_WALL]).sum()), int((mask == ids[category]).sum())

    wall_low, tongue_low = wall_and(replace(params, tongue_height=0.25, wall_depth=0.4), TONGUE)
    wall_high, tongue_high = wall_and(replace(params, tongue_height=0.42, wall_depth=0.4), TONGUE)
    assert tongue_high > tongue_low and wall_high < wall_low
    wall_thin, uvula_thin = wall_and(replace(params, uvula_width=0.07), UVULA)
    wall_wide, uvula_wide = wall_and(replace(params, uvula_width=0.13), UVULA)
    assert uvula_wide > uvula_thin and wall_wide < wall_thin


def test_higher_grade_means_larger_tonsils(cases):
    params = cases[0].params
    areas = []
    for share in (0.15, 0.4, 0.65, 0.85):
        _, mask, instances = render_params(replace(params, tonsil_extent=(share, share), tonsil_hidden=(False, False)), SIZE, np.random.default_rng(0))
        areas.append(sum(int((mask == i.instance_id).sum()) for i in instances if i.category_id == TONSIL))
    assert areas == sorted(areas) and areas[0] < areas[-1]


def test_images_look_like_textured_mucosa(cases):
    for case in cases[:20]:
        tissue = case.image[case.instance_mask > 0].astype(float)  # [N, 3]
        red, green, blue = tissue.mean(axis=0)
        assert red > green + 30 and red > blue + 30, "mucosa is red-dominant"
        tongue_id = next(i.instance_id for i in case.instances if i.category_id == TONGUE)
        tongue = case.image[case.instance_mask == tongue_id].astype(float).mean(axis=1)
        assert tongue.std() > 4.0, "tongue must be textured, not a flat fill"
    spread = np.std([c.image.reshape(-1, 3).mean(axis=0) for c in cases], axis=0)
    assert (spread > 3.0).all(), "cases must differ in colour (redness, white balance, light)"


def test_inflammation_reddens_and_exudate_whitens_the_tonsils(cases):
    params = next(c.params for c in cases if c.params.tonsil_grade >= 2)

    def tonsil_pixels(p):
        image, mask, instances = render_params(p, SIZE, np.random.default_rng(1))
        ids = [i.instance_id for i in instances if i.category_id == TONSIL]
        return image[np.isin(mask, ids)].astype(float)  # [N, 3]

    calm = tonsil_pixels(replace(params, redness=0.0, exudate=0.0))
    inflamed = tonsil_pixels(replace(params, redness=1.0, exudate=0.0))
    exudative = tonsil_pixels(replace(params, redness=1.0, exudate=0.4))
    chroma = lambda px: (px[:, 0] - px[:, 1]).mean()  # noqa: E731
    assert chroma(inflamed) > chroma(calm) + 10
    whitish = lambda px: (px.min(axis=1) > 140).mean()  # noqa: E731
    assert whitish(exudative) > whitish(inflamed) + 0.1


@pytest.mark.parametrize("size", [0, 30, 100, 257, -64])
def test_bad_size_is_rejected(size):
    with pytest.raises(ValueError, match="multiple of 8"):
        render_case(0, 0, size)
