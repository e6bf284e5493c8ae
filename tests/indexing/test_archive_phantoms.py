"""Ingest of the phantom tool's datasets: the PNG folder with its metadata and masks, and its DICOM export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from indexing import store
from indexing.archive import Archive
from indexing.ingest.metadata import pseudonymize
from indexing.ingest.run import ingest_path
from tests.indexing.conftest import stored_with_metadata

CASES = 6
SIZE = 32
SEED = 11
PSEUDONYM_CHARS = 16

# pycocotools' decode warns under numpy 2 (outside this project)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phantoms.dataset import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("phantoms") / "ds", CASES, SIZE, SEED, dicom=True)


def test_phantom_folder_brings_metadata_and_instance_masks(archive: Archive, phantom_dataset: Path) -> None:
    report = ingest_path(archive, phantom_dataset)
    coco = json.loads((phantom_dataset / "annotations.json").read_text())
    assert (report.added, report.skipped) == (CASES, [])
    assert report.annotations_added == len(coco["annotations"])

    with archive.sessions() as session:
        for row, meta in stored_with_metadata(session, phantom_dataset):
            assert (row.source, row.case_ref, row.diagnosis, row.study_uid) == ("phantom", meta["case_id"], meta["diagnosis"], meta["study_uid"])
            assert row.patient_ref == pseudonymize(archive.settings.pseudonym_key, meta["patient_id"], PSEUDONYM_CHARS)
            assert row.labels["tonsil_grade"] == int(meta["tonsil_grade"])
            instance_map = np.asarray(Image.open(phantom_dataset / "masks" / meta["file"]))
            annotations = store.list_annotations(session, row.id)
            assert annotations, "every phantom has instance masks"
            for annotation in annotations:
                decoded = mask_utils.decode({"size": annotation.mask_rle["size"], "counts": annotation.mask_rle["counts"].encode()})
                np.testing.assert_array_equal(decoded.astype(bool), instance_map == annotation.instance_id)

    again = ingest_path(archive, phantom_dataset)
    assert (again.added, again.already_present, again.annotations_added) == (0, CASES, 0)


def test_phantom_dicom_export_is_the_same_archive_image(archive: Archive, phantom_dataset: Path) -> None:
    report = ingest_path(
        archive,
        phantom_dataset / "dicom",
        metadata_csv=phantom_dataset / "metadata.csv",
        annotations_json=phantom_dataset / "annotations.json",
    )
    assert (report.added, report.skipped) == (CASES, [])
    with archive.sessions() as session:
        for row, meta in stored_with_metadata(session, phantom_dataset):
            assert (row.source, row.diagnosis, row.case_ref) == ("dicom", meta["diagnosis"], meta["case_id"])
            assert row.acquired_at.date().isoformat() == meta["study_date"]
            assert store.list_annotations(session, row.id)
            stored = np.asarray(Image.open(archive.files.absolute(row.stored_path)))
            np.testing.assert_array_equal(stored, np.asarray(Image.open(phantom_dataset / "images" / meta["file"]).convert("RGB")))
    # the PNG copies carry the same pixels: the archive already has them
    png = ingest_path(archive, phantom_dataset)
    assert (png.added, png.already_present) == (0, CASES)
