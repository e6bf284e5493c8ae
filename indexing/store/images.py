"""Image rows: what ingest adds, and the lookups ingest, the index builder and the API make by image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from indexing.cases import CaseRecord
from indexing.models import Image, utc_now
from indexing.store.annotations import NewAnnotation, _annotation
from indexing.store.lookup import MAX_ROW_ID, chunks


@dataclass(frozen=True)
class NewImage:
    """What ingest knows about one image before it has a row: its file, its case and its labels."""

    sha256: str
    stored_path: str
    width: int
    height: int
    source: str
    original_name: str | None = None  # the screened base file name (indexing/ingest/names.py)
    case: CaseRecord = CaseRecord()
    labels: dict[str, Any] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """The archive row's column values."""
        files = {name: getattr(self, name) for name in ("sha256", "stored_path", "width", "height", "source", "original_name")}
        return {**files, **self.case.columns(), "labels": self.labels}


def _json_problem(name: str, value: Any) -> str | None:
    if isinstance(value, str):
        return f"{name} contains a NUL byte" if "\x00" in value else None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} is not a finite number"
    if isinstance(value, dict):
        items = list(value.items())
        return next((p for k, v in items if (p := _json_problem(f"{name} {k}", v) or _json_problem(name, k))), None)
    if isinstance(value, (list, tuple)):
        return next((p for v in value if (p := _json_problem(name, v))), None)
    return None


def record_problem(record: NewImage) -> str | None:
    """Why the database would refuse `record`, checked here so SQLite (which takes a too-long string,
    a NUL byte or NaN in JSON silently) and PostgreSQL (which raises) behave the same. The reason
    names the field, never its value."""
    values = record.columns()
    for column in Image.__table__.columns:
        value = values.get(column.key)
        if isinstance(value, str):
            if "\x00" in value:
                return f"{column.key} contains a NUL byte"
            length = getattr(column.type, "length", None)
            if length is not None and len(value) > length:
                return f"{column.key} is longer than {length} characters"
    return _json_problem("findings", record.case.findings) or _json_problem("label", record.labels)


def add_image(session: Session, record: NewImage, annotations: Sequence[NewAnnotation] = ()) -> Image:
    return add_images(session, [(record, annotations)])[0]


def add_images(session: Session, records: Sequence[tuple[NewImage, Sequence[NewAnnotation]]]) -> list[Image]:
    """Insert images with their annotations in one flush (ingest's hot path: one multi-row insert)."""
    images = []
    for record, annotations in records:
        image = Image(**record.columns())
        image.annotations = [_annotation(annotation) for annotation in annotations]
        images.append(image)
    session.add_all(images)
    session.flush()
    return images


def get_image(session: Session, image_id: int, include_deleted: bool = False) -> Image | None:
    if not 0 < image_id <= MAX_ROW_ID:  # SQLite's driver cannot even send it (OverflowError)
        return None
    image = session.get(Image, image_id)
    if image is None or (image.deleted_at is not None and not include_deleted):
        return None
    return image


def list_images(
    session: Session,
    offset: int = 0,
    limit: int = 50,
    include_deleted: bool = False,
    diagnosis: str | None = None,
) -> list[Image]:
    query = select(Image).order_by(Image.id).offset(offset).limit(limit)
    if not include_deleted:
        query = query.where(Image.deleted_at.is_(None))
    if diagnosis is not None:
        query = query.where(Image.diagnosis == diagnosis)
    return list(session.scalars(query))


def existing_sha256(session: Session, digests: Sequence[str]) -> dict[str, str]:
    """The stored path of each of `digests` that already has a row (deleted rows included: a
    deleted image stays deleted)."""
    found: dict[str, str] = {}
    for chunk in chunks(list(digests)):
        found.update((sha, path) for sha, path in session.execute(select(Image.sha256, Image.stored_path).where(Image.sha256.in_(chunk))))
    return found


def referenced_paths(session: Session, stored_paths: Sequence[str]) -> set[str]:
    """Which of `stored_paths` a committed row points at (the proof a remover needs)."""
    found: set[str] = set()
    for chunk in chunks(list(stored_paths)):
        found.update(session.scalars(select(Image.stored_path).where(Image.stored_path.in_(chunk))))
    return found


def existing_sop_uids(session: Session, uids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(list(uids)):
        found.update(uid for uid in session.scalars(select(Image.sop_uid).where(Image.sop_uid.in_(chunk))) if uid)
    return found


def link_dicom_uids(session: Session, sha256: str, study_uid: str | None, series_uid: str | None, sop_uid: str) -> bool:
    """Give the row of `sha256` a DICOM's UIDs when it has none yet (a photo ingested before its
    DICOM); whether it did. A row that already has UIDs keeps them."""
    linked = session.execute(
        update(Image).where(Image.sha256 == sha256, Image.sop_uid.is_(None))
        .values(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
    )
    return bool(linked.rowcount)


def soft_delete_image(session: Session, image_id: int) -> Image:
    """Mark an image deleted (its row and file stay; the next index refresh drops it)."""
    image = get_image(session, image_id, include_deleted=True)
    if image is None:
        raise LookupError(f"no image with id {image_id}")
    if image.deleted_at is None:
        image.deleted_at = utc_now()
        session.flush()
    return image


def live_image_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Image.id).where(Image.deleted_at.is_(None)).order_by(Image.id)))


def deleted_image_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Image.id).where(Image.deleted_at.is_not(None)).order_by(Image.id)))
