"""Phantom dataset folders: worker-independent output, COCO round trip, metadata, bad arguments."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from api.cli import app
from formats.categories import CATEGORY_NAMES
from phantoms.dataset import generate_dataset
from phantoms.reader import dataset_categories, read_metadata
from phantoms.render import render_case

SIZE = 64
COUNT = 12
SEED = 3
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# pycocotools' annToMask trips a NumPy 2 deprecation inside the library, not in our code
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("phantoms") / "one_worker", COUNT, SIZE, SEED, workers=1)


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_output_is_identical_whatever_the_number_of_workers(dataset, tmp_path):
    two = generate_dataset(tmp_path / "two_workers", COUNT, SIZE, SEED, workers=2)
    assert _files(dataset) == _files(two)
    assert len(list((two / "images").glob("*.png"))) == COUNT


def test_extending_with_start_equals_generating_at_once(dataset, tmp_path):
    out = tmp_path / "extended"
    generate_dataset(out, 5, SIZE, SEED, start=0)
    generate_dataset(out, COUNT - 5, SIZE, SEED, start=5)
    assert _files(out) == _files(dataset)


def test_files_match_render_case(dataset):
    case = render_case(SEED, 7, SIZE)
    assert np.array_equal(np.asarray(Image.open(dataset / "images" / "000007.png")), case.image)
    assert np.array_equal(np.asarray(Image.open(dataset / "masks" / "000007.png")), case.instance_mask)
    row = read_metadata(dataset)[7]
    assert row == {"file": "000007.png", **case.metadata}


def test_coco_file_loads_and_its_masks_equal_the_pngs(dataset):
    coco = COCO(str(dataset / "annotations.json"))
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == CATEGORY_NAMES
    assert len(coco.getImgIds()) == COUNT
    categories = dataset_categories(dataset)
    for image in coco.loadImgs(coco.getImgIds()):
        mask_png = np.asarray(Image.open(dataset / "masks" / image["file_name"]))
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert {a["instance_id"] for a in annotations} == set(np.unique(mask_png)) - {0}
        for annotation in annotations:
            assert np.array_equal(coco.annToMask(annotation), (mask_png == annotation["instance_id"]).astype(np.uint8))
            assert categories[Path(image["file_name"]).stem][annotation["instance_id"]] == annotation["category_id"]


def test_metadata_has_patients_with_several_studies_and_valid_uids(dataset):
    rows = read_metadata(dataset)
    assert [r["file"] for r in rows] == [f"{i:06d}.png" for i in range(COUNT)]
    patients = {}
    for row in rows:
        patients.setdefault(row["patient_id"], []).append(row["study_date"])
        for key in ("study_uid", "series_uid", "sop_uid"):
            assert UID.match(row[key]) and len(row[key]) <= 64
        assert row["diagnosis"] and row["findings"].startswith(f"tonsils Brodsky grade {row['tonsil_grade']}")
    assert max(len(dates) for dates in patients.values()) > 1
    assert all(len(set(dates)) == len(dates) for dates in patients.values()), "repeat visits on distinct dates"
    uids = [row[k] for row in rows for k in ("study_uid", "series_uid", "sop_uid")]
    assert len(set(uids)) == len(uids)
    other_seed = render_case(SEED + 1, 0, SIZE).metadata
    assert other_seed["sop_uid"] != rows[0]["sop_uid"] and other_seed["case_id"] != rows[0]["case_id"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count must be at least 1"),
        ({"count": 0}, "count must be at least 1"),
        ({"size": 100}, "multiple of 8"),
        ({"workers": 0}, "workers must be at least 1"),
        ({"start": -3}, "start must be 0 or more"),
        ({"seed": -1}, "seed must be between"),
    ],
)
def test_bad_arguments_fail_clearly_and_write_nothing(tmp_path, kwargs, message):
    out = tmp_path / "never"
    arguments = {"count": 4, "size": SIZE, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        generate_dataset(out, **arguments)
    assert not out.exists()


def test_adding_cases_of_another_size_is_refused(dataset):
    before = (dataset / "annotations.json").read_bytes()
    with pytest.raises(ValueError, match="already holds"):
        generate_dataset(dataset, 2, 32, SEED, start=COUNT)
    assert (dataset / "annotations.json").read_bytes() == before
    assert not (dataset / "images" / f"{COUNT:06d}.png").exists()


def test_unwritable_folder_fails_clearly(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is a file"):
        generate_dataset(blocker / "dataset", 2, SIZE, 0)
    assert blocker.read_text() == "not a folder"


def test_cli_generates_and_reports_bad_arguments(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["phantom", "generate", "--out", str(out), "--count", "3", "--size", "32", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert len(read_metadata(out)) == 3
    bad = runner.invoke(app, ["phantom", "generate", "--out", str(tmp_path / "bad"), "--count", "3", "--size", "36"])
    assert bad.exit_code == 2
    assert "multiple of 8" in bad.output
    assert not (tmp_path / "bad").exists()
