"""A generated image as a DICOM Secondary Capture object, labelled synthetic.

Conversion Type SYN (synthetic image), Image Type DERIVED\\SECONDARY, in a new study and series
of its own (fresh UIDs), with no patient: it must never be filed into, or mistaken for, a
clinical study. Written with pydicom.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from formats.dicom import set_rgb_pixels

DESCRIPTION = "SYNTHETIC image generated from a sketch by Sketch2MedI; not an image of a patient"
LABEL = "SYNTHETIC: generated from a sketch, not a patient image"  # LO: at most 64 characters


def secondary_capture(image: np.ndarray, software_version: str) -> bytes:
    """uint8 [R, R, 3] RGB -> the bytes of a DICOM Part 10 file."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a Secondary Capture here is uint8 RGB [R, R, 3], got {image.dtype} {image.shape}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.now(timezone.utc)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()  # a study of its own, never a clinical one
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.ConversionType = "SYN"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "NO"
    ds.StudyDescription = ds.SeriesDescription = LABEL
    ds.DerivationDescription = DESCRIPTION
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.StudyDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.Manufacturer = "Sketch2MedI"
    ds.SoftwareVersions = software_version[:64]
    set_rgb_pixels(ds, image)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
