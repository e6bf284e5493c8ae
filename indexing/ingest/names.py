"""Which original file names the archive keeps (`images.original_name`), and why so few.

A file name is the one part of an ingest nobody chose to hand over: hospital exports and camera
folders name files after patients ("Smith_John_1960-01-01.jpg"), record numbers ("MRN0042117.png")
or dates of birth, and nothing in a name says whether it does. So, unlike metadata columns (an
allow-list the site fills in on purpose), a name is kept only

- for a phantom dataset folder, whose names the renderer made up ("0007.png"), or
- when the operator asks (`s2m archive ingest --keep-file-names`),

and in both cases only the base name (never the folders above it, where patient names most often
are) and only when it passes `screen_file_name` (a real export laid out like a phantom folder is
screened too): no patient id of its own row, no run of six or more digits (record numbers,
compact dates; a zero-padded counter such as the renderer's "000042" is allowed), no date, no
identifying word, only [A-Za-z0-9._ -], at most 128 characters.

A withheld name is counted in the ingest report, never shown or logged. A DICOMweb instance has
no file name; the archive's own identity of an image is its id, case id and DICOM UIDs.
"""

from __future__ import annotations

import re

from indexing.ingest.metadata import IDENTIFYING_WORDS

MAX_NAME_LENGTH = 128
SYNTHETIC_NAME_SOURCES = ("phantom",)
_ALLOWED = re.compile(r"[A-Za-z0-9._ -]+")
_LONG_NUMBER = re.compile(r"\d{6,}")
_DATE = re.compile(r"\d{4}[-_. ]\d{1,2}[-_. ]\d{1,2}|\d{1,2}[-_. ]\d{1,2}[-_. ]\d{2,4}")


def _is_counter(digits: str) -> bool:
    """A zero-padded sequence number of at most four significant digits ("000042"), not a record number."""
    return digits.startswith("0") and len(digits.lstrip("0")) <= 4


def screen_file_name(name: str, patient_id: str | None) -> bool:
    """Whether base name `name` may be kept: it passes every rule of the module docstring."""
    if not name or len(name) > MAX_NAME_LENGTH or not _ALLOWED.fullmatch(name):
        return False
    lowered = name.lower()
    if any(not _is_counter(run) for run in _LONG_NUMBER.findall(name)):
        return False
    if _DATE.search(name) or any(word in lowered for word in IDENTIFYING_WORDS):
        return False
    return not (patient_id and patient_id.strip() and patient_id.strip().lower() in lowered)


def kept_file_name(item_name: str, source: str, keep_file_names: bool, patient_id: str | None) -> str | None:
    """The original base name to store for an ingested item, or None (withheld or never had one)."""
    if source == "dicomweb":
        return None
    base = item_name.rsplit("/", 1)[-1]
    wanted = keep_file_names or source in SYNTHETIC_NAME_SOURCES
    return base if wanted and screen_file_name(base, patient_id) else None
