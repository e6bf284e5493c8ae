"""A key's own searches: each query's channel vectors (to refine or reopen it), its chain of
refinements, and the searches it saved under a name. Only the key that made a query sees it here:
another key's query or saved search is as unknown as a missing one."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexing.models import QueryLog, QueryVectors, SavedSearch

MAX_CHAIN = 100  # refinements followed back to the first search (a guard against a cycle)


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


def feedback_record(like: Sequence[int], unlike: Sequence[int], exclude: Sequence[int], weights: dict[str, float]) -> dict[str, Any]:
    """What a refine or reopen row keeps of its marks: ids and weights only."""
    return {"like": sorted(like), "unlike": sorted(unlike), "exclude": sorted(exclude), "weights": weights}
