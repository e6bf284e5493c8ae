"""A sketch search's pictures (its canonical sketch and x_0 .. x_T) in the database, so that the
follow-up fetches of `/v1/queries/{id}/...` find them on whichever replica the proxy picks.

Why the database and not the file store: every replica already shares it, the pictures are
committed in the same transaction as their query's log row (a fetch that finds the query finds its
pictures), whose key owns them is the log row's, and the retention sweep is one `DELETE` that any
replica may run at any time without a lock (the file store's files are content-addressed archive
images whose removal belongs to the file-store lock's holders). Pictures are small at the served
resolutions (one compressed npz of uint8 arrays: ~4-40 kB at 64 px), kept for a bounded count and
age (`PictureRetention`), and never hold a patient identifier.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from indexing.models import QueryLog, QueryPictures, utc_now


@dataclass(frozen=True)
class Pictures:
    """A query's canonical sketch (uint8 [R, R]) and x_0 .. x_T (uint8 [R, R, 3] each)."""

    sketch: np.ndarray
    steps: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class PictureRetention:
    """How many of the most recent queries keep their pictures, and for how long at most."""

    count: int = 2000
    max_age: timedelta = timedelta(hours=24)


def put_pictures(session: Session, entry: QueryLog, pictures: Pictures) -> None:
    """Store `entry`'s pictures in the caller's transaction (the one that logs the query)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, sketch=np.asarray(pictures.sketch, np.uint8),
                        steps=np.stack([np.asarray(step, np.uint8) for step in pictures.steps]))
    session.add(QueryPictures(query_id=entry.id, created_at=entry.created_at or utc_now(), pictures=buffer.getvalue()))
    session.flush()


def pictures_of(session: Session, entry: QueryLog) -> Pictures | None:
    """The pictures kept for `entry`, or None (not a sketch search, or swept by the retention)."""
    row = session.get(QueryPictures, entry.id)
    if row is None:
        return None
    with np.load(io.BytesIO(row.pictures), allow_pickle=False) as arrays:
        return Pictures(arrays["sketch"], tuple(arrays["steps"]))


def sweep_pictures(session: Session, retention: PictureRetention) -> int:
    """Delete the pictures older than the retention's age, or beyond its count of the newest; returns how many went."""
    cutoff = utc_now() - retention.max_age
    removed = session.execute(delete(QueryPictures).where(QueryPictures.created_at < cutoff)).rowcount or 0
    oldest_kept = session.scalar(select(QueryPictures.query_id).order_by(QueryPictures.query_id.desc())
                                 .offset(retention.count - 1).limit(1))
    if oldest_kept is not None:
        removed += session.execute(delete(QueryPictures).where(QueryPictures.query_id < oldest_kept)).rowcount or 0
    return removed
