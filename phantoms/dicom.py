"""DICOM export of a phantom photograph as VL Photographic Image Storage (modality XC).

Throat-camera photographs live in a PACS as VL Photographic Images; writing the phantoms the
same way lets ingest be tested on real DICOM files. The case metadata goes into the tags a
de-identified archive would hold: pseudonymous PatientID, no name or birth date, study date,
diagnosis (AdmittingDiagnosesDescription), findings and tonsil grade (ImageComments).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from formats.dicom import set_rgb_pixels

VL_PHOTOGRAPHIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"
MODALITY = "XC"
BODY_PART = "PHARYNX"
PHARYNX_CODE = ("54066008", "SCT", "Pharynx")  # SNOMED CT body structure (PS3.16 CID 4)
STUDY_TIME = "090000"
MANUFACTURER = "Sketch2MedI phantom renderer"
REQUIRED_METADATA = ("case_id", "patient_id", "study_date", "diagnosis", "findings", "tonsil_grade", "study_uid", "series_uid", "sop_uid")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def build_dataset(image: np.ndarray, metadata: dict[str, str]) -> Dataset:
    """A complete VL Photographic Image dataset for uint8 RGB `image` [H, W, 3] and case metadata."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    missing = [key for key in REQUIRED_METADATA if not metadata.get(key)]
    if missing:
        raise ValueError(f"metadata lacks {', '.join(missing)}")
    study_date = dt.date.fromisoformat(metadata["study_date"]).strftime("%Y%m%d")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = metadata["sop_uid"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
    ds.SOPInstanceUID = metadata["sop_uid"]
    ds.StudyInstanceUID = metadata["study_uid"]
    ds.SeriesInstanceUID = metadata["series_uid"]
    ds.Modality = MODALITY
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    # patient: pseudonym only (de-identified archive)
    ds.PatientName = ""
    ds.PatientID = metadata["patient_id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = metadata.get("patient_sex", "")
    if metadata.get("patient_age"):
        ds.PatientAge = f"{int(metadata['patient_age']):03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic phantom; pseudonymous patient id"
    # study / series / instance
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = STUDY_TIME
    ds.AcquisitionDateTime = study_date + STUDY_TIME
    ds.AccessionNumber = metadata["case_id"]
    ds.StudyID = metadata["case_id"]
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Pharyngeal photograph"
    ds.SeriesDescription = "Throat camera"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = MANUFACTURER
    ds.BodyPartExamined = BODY_PART
    ds.AnatomicRegionSequence = Sequence([_code(*PHARYNX_CODE)])
    ds.AcquisitionContextSequence = Sequence([])
    ds.AdmittingDiagnosesDescription = metadata["diagnosis"]
    ds.ImageComments = f"{metadata['findings']} (tonsil grade {metadata['tonsil_grade']})"
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    set_rgb_pixels(ds, image)
    return ds


def write_dicom(path: Path, image: np.ndarray, metadata: dict[str, str]) -> Path:
    """Write `image` with `metadata` as a VL Photographic Image DICOM file at `path`."""
    dataset = build_dataset(image, metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")  # renamed once complete: a file there is a whole one
    pydicom.dcmwrite(partial, dataset, enforce_file_format=True)
    partial.replace(path)
    return path


def write_dataset_dicoms(dataset: Path, out: Path) -> list[Path]:
    """The DICOM file of each case of a rendered dataset folder, written into `out` unless already there
    (for a PACS to hold the same studies an archive ingested from the PNGs: same UIDs, same pixels)."""
    from PIL import Image

    from phantoms.reader import read_metadata

    paths = []
    for row in read_metadata(dataset):
        path = Path(out) / f"{Path(row['file']).stem}.dcm"
        if not path.is_file():
            with Image.open(Path(dataset) / "images" / row["file"]) as picture:
                write_dicom(path, np.asarray(picture.convert("RGB")), row)
        paths.append(path)
    return paths
