"""DICOM unique identifiers (PS3.5 section 9.1): the one syntax check of a UID wherever one enters
the archive (a metadata CSV, a DICOM file's tags, a DICOMweb listing).

A UID is numeric components separated by dots, each without a leading zero (a lone "0" is a
component), at most 64 characters. A value that is not one (free text, a patient name typed into
the wrong tag) is refused by its field's name, never echoed.
"""

from __future__ import annotations

import re

UID_MAX_LENGTH = 64
_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")


def is_dicom_uid(text: str) -> bool:
    """Whether `text` is a syntactically valid DICOM UID."""
    return len(text) <= UID_MAX_LENGTH and _UID.fullmatch(text) is not None
