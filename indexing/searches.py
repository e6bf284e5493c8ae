"""A key's own searches: each query's channel vectors (to refine or reopen it), its chain of
refinements, the searches it saved under a name, and its recent searches. Only the key that made a
query sees it here: another key's query or saved search is as unknown as a missing one. Searches are
kept for a bounded time (`prune_queries`) unless a saved search names them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from indexing.models import QueryLog, QueryPictures, QueryVectors, SavedSearch, utc_now

MAX_CHAIN = 100  # refinements followed back to the first search (a guard against a cycle)
PRUNE_CHUNK = 500  # ids per DELETE (SQLite's bound-parameter limit)
PREVIEW = "preview"  # the kind of a live-preview search: logged and readable, but not one of the key's recent searches


@dataclass(frozen=True)
class Recent:
    """One of a key's recent searches, and whether its pictures are still kept and a saved search names it."""

    entry: QueryLog
    pictures_kept: bool
    saved: bool


def owned_query(session: Session, uid: str, api_key_id: int) -> QueryLog | None:
    """The logged query `uid` if key `api_key_id` made it, else None."""
    entry = session.scalars(select(QueryLog).where(QueryLog.uid == uid)).one_or_none()
    return entry if entry is not None and entry.api_key_id == api_key_id else None


def put_query_vectors(session: Session, entry: QueryLog, version: str, vectors: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(vector, np.float32) for name, vector in vectors.items()})
    session.add(QueryVectors(query_id=entry.id, model_version=version, vectors=buffer.getvalue()))
    session.flush()


def query_vectors_of(session: Session, entry: QueryLog) -> tuple[str, dict[str, np.ndarray]] | None:
    """The bundle version and channel vectors a query was searched with, or None if none were kept."""
    row = session.get(QueryVectors, entry.id)
    if row is None:
        return None
    with np.load(io.BytesIO(row.vectors), allow_pickle=False) as arrays:
        return row.model_version, {name: arrays[name] for name in arrays.files}


def refinement_chain(session: Session, entry: QueryLog) -> list[QueryLog]:
    """The first search and every refinement or reopening after it, up to `entry` (oldest first)."""
    chain = [entry]
    while chain[-1].parent_uid is not None and len(chain) < MAX_CHAIN:
        parent = session.scalars(select(QueryLog).where(QueryLog.uid == chain[-1].parent_uid)).one_or_none()
        if parent is None:
            break
        chain.append(parent)
    return chain[::-1]


def save_search(session: Session, api_key_id: int, entry: QueryLog, name: str) -> SavedSearch:
    saved = SavedSearch(api_key_id=api_key_id, query_id=entry.id, name=name)
    session.add(saved)
    session.flush()
    return saved


def saved_searches(session: Session, api_key_id: int) -> list[tuple[SavedSearch, QueryLog]]:
    """The key's saved searches with their queries, newest first."""
    rows = session.execute(select(SavedSearch, QueryLog).join(QueryLog, QueryLog.id == SavedSearch.query_id)
                           .where(SavedSearch.api_key_id == api_key_id).order_by(SavedSearch.id.desc()))
    return [(saved, entry) for saved, entry in rows]


def owned_saved(session: Session, saved_id: int, api_key_id: int) -> tuple[SavedSearch, QueryLog] | None:
    saved = session.get(SavedSearch, saved_id)
    if saved is None or saved.api_key_id != api_key_id:
        return None
    return saved, session.get_one(QueryLog, saved.query_id)


def feedback_record(like: Sequence[int], unlike: Sequence[int], exclude: Sequence[int], keep: Sequence[int],
                    weights: dict[str, float]) -> dict[str, Any]:
    """What a refine or reopen row keeps of its marks: ids (`keep` in its order: the cases shown first) and weights only."""
    return {"like": sorted(like), "unlike": sorted(unlike), "exclude": sorted(exclude), "keep": list(keep), "weights": weights}


def recent_queries(session: Session, api_key_id: int, limit: int) -> list[Recent]:
    """The key's own latest searches (live previews left out), newest first."""
    kept = exists().where(QueryPictures.query_id == QueryLog.id)
    saved = exists().where(SavedSearch.query_id == QueryLog.id)
    rows = session.execute(select(QueryLog, kept, saved).where(QueryLog.api_key_id == api_key_id, QueryLog.kind != PREVIEW)
                           .order_by(QueryLog.created_at.desc(), QueryLog.id.desc()).limit(limit))
    return [Recent(entry, bool(has_pictures), bool(is_saved)) for entry, has_pictures, is_saved in rows]


def prune_queries(session: Session, max_age: timedelta) -> int:
    """Delete the searches older than `max_age` that no saved search names (their vectors and pictures go
    with them, by the foreign keys' ON DELETE CASCADE); returns how many went. The audit of reads
    (`access_log`) is not touched."""
    cutoff = utc_now() - max_age
    pinned = select(SavedSearch.query_id)
    old = select(QueryLog.id).where(QueryLog.created_at < cutoff, QueryLog.id.not_in(pinned))
    ids = list(session.scalars(old))
    for start in range(0, len(ids), PRUNE_CHUNK):
        chunk = ids[start:start + PRUNE_CHUNK]
        session.execute(delete(QueryLog).where(QueryLog.id.in_(chunk)))
    return len(ids)
