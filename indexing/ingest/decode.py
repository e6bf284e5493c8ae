"""From a file or DICOM dataset to checked RGB pixels, or a `SkipFile` saying why not.

Headers are checked before any pixel is decoded, so a decompression bomb costs nothing; the stored
form is a metadata-free PNG (EXIF, text chunks and DICOM tags are not carried over).
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from formats.uids import is_dicom_uid

# SOP classes of photographs (DICOM PS3.4): VL Photographic, VL Endoscopic, Secondary Capture.
PHOTO_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
}
COLOUR_PHOTOMETRICS = ("RGB", "YBR_FULL", "YBR_FULL_422")
PHOTO_BITS = 8
PHOTO_SAMPLES = 3


class SkipFile(Exception):
    """An input that ingest leaves out; the message is the reason shown to the admin."""


@dataclass(frozen=True)
class DicomFacts:
    """What ingest keeps from a DICOM header (the patient ID only until it is pseudonymised)."""

    patient_id: str | None
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    acquired_at: datetime | None


def _check_rgb(pixels: np.ndarray) -> None:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != PHOTO_SAMPLES:
        raise SkipFile(f"expected 8-bit RGB pixels, got {pixels.dtype} {list(pixels.shape)}")


def pixel_digest(pixels: np.ndarray) -> str:
    """sha256 of uint8 [H, W, 3] pixels (and their shape): one photo stored as PNG, decoded from
    JPEG or carried in DICOM with the same pixels is one archive image."""
    _check_rgb(pixels)
    height, width = pixels.shape[:2]
    digest = hashlib.sha256(f"RGB8 {width}x{height}\n".encode("ascii"))
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def encode_png(pixels: np.ndarray) -> bytes:
    """The stored form of uint8 [H, W, 3] pixels: a PNG without any metadata chunk."""
    _check_rgb(pixels)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise SkipFile(f"corrupt: image size {width}x{height}")
    if width * height > max_pixels:
        raise SkipFile(f"too large: {width}x{height} pixels exceeds the limit of {max_pixels} pixels")


def _check_file_bytes(path: Path, max_file_bytes: int) -> None:
    size = path.stat().st_size
    if size > max_file_bytes:
        raise SkipFile(f"too large: {size} bytes exceeds the limit of {max_file_bytes} bytes")
    if size == 0:
        raise SkipFile("corrupt: empty file")


def read_photo(path: Path, max_pixels: int, max_file_bytes: int) -> np.ndarray:
    """A PNG/JPEG file as uint8 [H, W, 3], EXIF orientation applied."""
    _check_file_bytes(path, max_file_bytes)
    try:
        with warnings.catch_warnings():
            # our own limit (below) decides; Pillow's warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # lazy: reads the header only
                _check_size(image.width, image.height, max_pixels)
                image.load()
                upright = ImageOps.exif_transpose(image)
                return np.asarray(upright.convert("RGB"))
    except SkipFile:
        raise
    except Image.DecompressionBombError as error:
        # Pillow's own guard fired first (at twice its MAX_IMAGE_PIXELS); say it in our terms
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{claimed.group(1)} pixels" if claimed else "the image"
        raise SkipFile(f"too large: {size} exceeds the limit of {min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)} pixels") from None
    except UnidentifiedImageError as error:
        raise SkipFile("not an image: the file's content is not a readable PNG or JPEG") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SkipFile(f"corrupt: {error}") from error


def _dicom_datetime(date: str | None, time: str | None) -> datetime | None:
    if not date:
        return None
    text = (str(date) + (str(time) if time else "")).split(".")[0]
    for layout in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d%H", "%Y%m%d"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def dicom_facts(dataset) -> DicomFacts:  # type: ignore[no-untyped-def]
    """UIDs (each checked, SkipFile for one that is not a UID) and the acquisition time
    (AcquisitionDateTime, else Content, else Study date and time)."""
    acquired = None
    if dataset.get("AcquisitionDateTime"):
        text = str(dataset.AcquisitionDateTime)
        acquired = _dicom_datetime(text[:8], text[8:14])
    acquired = acquired or _dicom_datetime(dataset.get("ContentDate"), dataset.get("ContentTime"))
    acquired = acquired or _dicom_datetime(dataset.get("StudyDate"), dataset.get("StudyTime"))

    def text(keyword: str) -> str | None:
        value = dataset.get(keyword)
        return None if value is None else (str(value).strip() or None)

    def uid(keyword: str) -> str | None:
        value = text(keyword)
        if value is not None and not is_dicom_uid(value):
            raise SkipFile(f"its {keyword} is not a DICOM UID (digits and dots, at most 64 characters)")
        return value

    return DicomFacts(
        patient_id=text("PatientID"),
        study_uid=uid("StudyInstanceUID"),
        series_uid=uid("SeriesInstanceUID"),
        sop_uid=uid("SOPInstanceUID"),
        acquired_at=acquired,
    )


def dicom_pixels(dataset, max_pixels: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The photograph of a VL Photographic / Secondary Capture dataset as uint8 [H, W, 3]."""
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class not in PHOTO_SOP_CLASSES:
        raise SkipFile(f"unsupported SOP class {sop_class or '(none)'}: only {', '.join(PHOTO_SOP_CLASSES.values())}")
    if "PixelData" not in dataset:
        raise SkipFile("no pixel data in the DICOM file")
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric not in COLOUR_PHOTOMETRICS:
        raise SkipFile(f"unsupported photometric interpretation {photometric or '(none)'}: expected {', '.join(COLOUR_PHOTOMETRICS)}")
    if int(dataset.get("SamplesPerPixel", 0)) != PHOTO_SAMPLES or int(dataset.get("BitsAllocated", 0)) != PHOTO_BITS:
        raise SkipFile("unsupported pixel format: expected 3 samples of 8 bits")
    if int(dataset.get("NumberOfFrames", 1) or 1) != 1:
        raise SkipFile("unsupported: multi-frame image")
    _check_size(int(dataset.get("Columns", 0)), int(dataset.get("Rows", 0)), max_pixels)
    try:
        pixels = dataset.pixel_array  # pydicom >= 3 converts YBR to RGB itself
    except Exception as error:  # pydicom raises many types for damaged pixel data
        raise SkipFile(f"corrupt: pixel data could not be decoded ({type(error).__name__})") from error
    return np.asarray(pixels, dtype=np.uint8)


def read_dicom_file(path: Path, max_pixels: int, max_file_bytes: int):  # type: ignore[no-untyped-def]
    """(pixels uint8 [H, W, 3], DicomFacts) of a DICOM file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    _check_file_bytes(path, max_file_bytes)
    with quiet_pydicom():
        try:
            dataset = pydicom.dcmread(path)
        except InvalidDicomError as error:
            raise SkipFile("not a DICOM file") from error
        except Exception as error:
            raise SkipFile(f"corrupt: DICOM header could not be read ({type(error).__name__})") from error
        return dicom_pixels(dataset, max_pixels), dicom_facts(dataset)


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """pydicom's warnings about invalid values quote the values (a UID holding a name, say):
    they are silenced, and the file is judged by our own checks, which name only the field."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
