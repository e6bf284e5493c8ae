"""DICOM export: VL Photographic Image files that read back with pydicom, UIDs and metadata intact."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image

from phantoms.dataset import generate_dataset
from phantoms.dicom import VL_PHOTOGRAPHIC_IMAGE_STORAGE, write_dicom
from phantoms.reader import read_metadata
from phantoms.render import render_case


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("dicom") / "ds", 4, 32, 9, dicom=True)


def test_dicom_files_read_back_with_the_right_class_uids_and_pixels(dataset):
    for row in read_metadata(dataset):
        stem = row["file"].removesuffix(".png")
        ds = pydicom.dcmread(dataset / "dicom" / f"{stem}.dcm")
        assert ds.SOPClassUID == VL_PHOTOGRAPHIC_IMAGE_STORAGE == ds.file_meta.MediaStorageSOPClassUID
        assert ds.Modality == "XC"
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (row["study_uid"], row["series_uid"], row["sop_uid"])
        assert ds.file_meta.MediaStorageSOPInstanceUID == row["sop_uid"]
        assert ds.PatientID == row["patient_id"] and str(ds.PatientName) == "" and ds.PatientBirthDate == ""
        assert ds.StudyDate == row["study_date"].replace("-", "")
        assert ds.AccessionNumber == row["case_id"]
        assert ds.AdmittingDiagnosesDescription == row["diagnosis"]
        assert row["findings"] in ds.ImageComments
        assert np.array_equal(ds.pixel_array, np.asarray(Image.open(dataset / "images" / row["file"])))


def test_write_dicom_rejects_bad_input_and_writes_nothing(tmp_path):
    case = render_case(0, 0, 32)
    with pytest.raises(ValueError, match="uint8 RGB"):
        write_dicom(tmp_path / "float.dcm", case.image.astype(np.float32), case.metadata)
    incomplete = {k: v for k, v in case.metadata.items() if k != "sop_uid"}
    with pytest.raises(ValueError, match="sop_uid"):
        write_dicom(tmp_path / "incomplete.dcm", case.image, incomplete)
    assert list(tmp_path.iterdir()) == []
