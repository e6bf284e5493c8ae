"""A search's metadata filters and the SQL that applies them (the engine's filter and hydrate stages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement

from indexing.models import Image


@dataclass(frozen=True)
class Filters:
    """Metadata conditions, run in the DB; an empty Filters passes every live image.

    `diagnoses`: any of; `findings`: all of; dates inclusive (timezone-aware); patients are
    pseudonyms (`Image.patient_ref`): `patients` keeps only those, `exclude_patients` drops them.
    """

    diagnoses: tuple[str, ...] = ()
    findings: tuple[str, ...] = ()
    acquired_from: datetime | None = None
    acquired_to: datetime | None = None
    patients: tuple[str, ...] = ()
    exclude_patients: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self == Filters()

    def as_record(self) -> dict[str, Any]:
        """A JSON-able form (for the query log; pseudonyms only, never identifiers)."""
        return {
            key: (value.isoformat() if isinstance(value, datetime) else list(value))
            for key, value in self.__dict__.items()
            if value not in (None, ())
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Filters":
        """The inverse of `as_record` (a logged query's filters, to run it again)."""
        return cls(**{key: (datetime.fromisoformat(value) if key.startswith("acquired_") else tuple(value))
                      for key, value in record.items()})

def sql_conditions(filters: Filters) -> list[ColumnElement[bool]]:
    """The conditions on Image of the filters that SQL can express (the store adds "live"; findings,
    all of, are checked on the rows)."""
    conditions: list[ColumnElement[bool]] = []
    if filters.diagnoses:
        conditions.append(Image.diagnosis.in_(filters.diagnoses))
    if filters.acquired_from is not None:
        conditions.append(Image.acquired_at >= filters.acquired_from)
    if filters.acquired_to is not None:
        conditions.append(Image.acquired_at <= filters.acquired_to)
    if filters.patients:
        conditions.append(Image.patient_ref.in_(filters.patients))
    if filters.exclude_patients:
        conditions.append(Image.patient_ref.is_(None) | Image.patient_ref.not_in(filters.exclude_patients))
    return conditions
