"""One case's metadata, declared once: what ingest reads, the archive row keeps, a hit carries and the API shows.

`CaseMetadata` (a metadata CSV row), `store.NewImage` (an image before it has a row) and
`retrieval.engine.Hit` (a ranked case) hold a `CaseRecord` instead of repeating its fields; the
API's `ImageOut` is built from one (`api.views`), its JSON names unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from indexing.models import Image


@dataclass(frozen=True)
class CaseRecord:
    """A case's clinical and DICOM identity, pseudonymised: `patient_ref` is the pseudonym, never the identifier."""

    case_ref: str | None = None
    patient_ref: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    acquired_at: datetime | None = None
    diagnosis: str | None = None
    findings: tuple[str, ...] = ()

    @classmethod
    def of_row(cls, row: Image) -> "CaseRecord":
        """The record an archive row keeps (its columns of the same names)."""
        return cls(case_ref=row.case_ref, patient_ref=row.patient_ref, study_uid=row.study_uid, series_uid=row.series_uid,
                   sop_uid=row.sop_uid, acquired_at=row.acquired_at, diagnosis=row.diagnosis,
                   findings=tuple(row.findings or ()))

    def columns(self) -> dict[str, Any]:
        """The archive row's columns of this record (findings as the JSON list the row stores)."""
        return {**asdict(self), "findings": list(self.findings)}
