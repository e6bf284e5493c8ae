"""Archive metadata of a phantom case: pseudonymous patient, study date, DICOM UIDs.

Everything is a pure function of (seed, index): consecutive indices are grouped into patients
with several studies each, so the archive has the repeat visits a hospital archive has. No real
identifier exists anywhere; the patient id is a keyed hash, as a de-identified archive holds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np

from phantoms.params import CaseParams, diagnose, findings

PATIENT_STREAM = 1  # second entry of the RNG key, apart from the case stream [seed, index]
DICOM_UID_ROOT = "2.25."  # UUID-derived UIDs (PS3.5 B.2): no registered root needed


@dataclass(frozen=True)
class MetadataConfig:
    """How the phantom archive groups cases into patients and spreads them over time."""

    studies_per_patient: int = 3
    first_date: dt.date = dt.date(2018, 1, 1)
    span_days: int = 6 * 365
    visit_gap_days: tuple[int, int] = (14, 400)
    age_years: tuple[int, int] = (3, 80)
    female_share: float = 0.5
    max_index: int = 999_999  # case ids and file names carry six digits
    max_seed: int = 9_999_999  # keeps the case id within DICOM's 16-character AccessionNumber


def case_id(seed: int, index: int) -> str:
    """Human-readable id of a case, unique across seeds (at most 16 characters)."""
    return f"PH{seed}-{index:06d}"


def file_stem(index: int) -> str:
    """Zero-padded file name stem of a case (`000123`)."""
    return f"{index:06d}"


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def dicom_uid(kind: str, seed: int, index: int) -> str:
    """A deterministic `2.25.<128-bit int>` UID for the study, series or instance of a case."""
    return DICOM_UID_ROOT + str(int.from_bytes(_digest("phantom", kind, seed, index)[:16], "big"))


def patient_pseudonym(seed: int, patient: int) -> str:
    """Pseudonymous patient id: a hash, never a name or record number."""
    return "PSN" + _digest("patient", seed, patient).hex()[:12].upper()


def case_metadata(seed: int, index: int, params: CaseParams, config: MetadataConfig = MetadataConfig()) -> dict[str, str]:
    """The metadata.csv row of a case (without `file`), all values as strings."""
    patient, visit = divmod(index, config.studies_per_patient)
    rng = np.random.default_rng([seed, patient, PATIENT_STREAM])
    first_visit = config.first_date + dt.timedelta(days=int(rng.integers(config.span_days)))
    gaps = rng.integers(config.visit_gap_days[0], config.visit_gap_days[1], size=config.studies_per_patient)
    study_date = first_visit + dt.timedelta(days=int(gaps[:visit].sum()))
    age = int(rng.integers(config.age_years[0], config.age_years[1])) + (study_date - first_visit).days // 365
    sex = "F" if rng.random() < config.female_share else "M"
    return {
        "case_id": case_id(seed, index),
        "patient_id": patient_pseudonym(seed, patient),
        "patient_sex": sex,
        "patient_age": str(age),
        "study_date": study_date.isoformat(),
        "diagnosis": diagnose(params),
        "findings": findings(params),
        "tonsil_grade": str(params.tonsil_grade),
        "study_uid": dicom_uid("study", seed, index),
        "series_uid": dicom_uid("series", seed, index),
        "sop_uid": dicom_uid("instance", seed, index),
    }
