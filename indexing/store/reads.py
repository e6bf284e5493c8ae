"""Reads across the archive: the filtered image reads of the engine and the routes, and whole-archive views."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.orm import Session

from indexing.filestore import FileStore
from indexing.models import Annotation, Embedding, Image, Sketch
from indexing.store.builds import active_index_build
from indexing.store.lookup import chunks


@dataclass(frozen=True)
class ArchiveStats:
    images: int
    deleted: int
    by_source: dict[str, int]
    by_diagnosis: dict[str, int]
    annotations: int
    sketches: int
    embeddings: int
    active_build_id: int | None


@dataclass(frozen=True)
class Consistency:
    """Files without a row and rows without a file; both empty in a healthy archive."""

    orphan_files: list[str]
    missing_files: list[str]

    @property
    def ok(self) -> bool:
        return not self.orphan_files and not self.missing_files


def archive_stats(session: Session) -> ArchiveStats:
    live = Image.deleted_at.is_(None)
    active = active_index_build(session)
    return ArchiveStats(
        images=session.scalar(select(func.count()).select_from(Image).where(live)) or 0,
        deleted=session.scalar(select(func.count()).select_from(Image).where(Image.deleted_at.is_not(None))) or 0,
        by_source=dict(session.execute(select(Image.source, func.count()).where(live).group_by(Image.source)).all()),
        by_diagnosis={
            diagnosis or "(none)": count
            for diagnosis, count in session.execute(
                select(Image.diagnosis, func.count()).where(live).group_by(Image.diagnosis)
            ).all()
        },
        annotations=session.scalar(select(func.count()).select_from(Annotation)) or 0,
        sketches=session.scalar(select(func.count()).select_from(Sketch)) or 0,
        embeddings=session.scalar(select(func.count()).select_from(Embedding)) or 0,
        active_build_id=active.id if active else None,
    )


def consistency(session: Session, files: FileStore) -> Consistency:
    """Compare the rows' stored paths with the files on disk."""
    rows = set(session.scalars(select(Image.stored_path)))
    on_disk = set(files.stored_paths())
    return Consistency(
        orphan_files=sorted(on_disk - rows),
        missing_files=sorted(path for path in rows if not files.absolute(path).exists()),
    )


def live_image_findings(session: Session, conditions: Sequence[ColumnElement[bool]] = ()) -> list[Row[Any]]:
    """(id, findings) of every live image meeting `conditions`, by id (the engine's filter stage)."""
    query = select(Image.id, Image.findings).where(Image.deleted_at.is_(None), *conditions).order_by(Image.id)
    return list(session.execute(query).all())


def live_images(session: Session, ids: Sequence[int], conditions: Sequence[ColumnElement[bool]] = ()) -> dict[int, Image]:
    """The live rows among `ids` meeting `conditions`, by id (a past query's results, the engine's hydrate stage)."""
    query = select(Image).where(Image.deleted_at.is_(None), *conditions)
    return {row.id: row for chunk in chunks(list(ids)) for row in session.scalars(query.where(Image.id.in_(chunk)))}
