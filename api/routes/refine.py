"""`POST /v1/queries/{id}/refine`: the same search again, moved by the hits its user marked "right"
and "not this" (relevance feedback, retrieval/feedback.py). The refinement is a new logged query,
linked to the one it refines and owned by the same key; the answer lists every step so far."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.deps import SearchKey, ServiceDep, SessionDep, client_address
from api.routes.search import answer
from api.schemas import MarksIn, RefinementOut, RefineOut
from api.service import Service
from indexing import store
from indexing.fused_index import ChannelWeights
from indexing.models import ApiKey, QueryLog
from indexing.searches import feedback_record, owned_query, query_vectors_of, refinement_chain
from indexing.vectors import CHANNELS, SHAPE
from retrieval.engine import Query, SearchEngine
from retrieval.feedback import marks_as_shown
from retrieval.feedback import refine as refined
from retrieval.filters import Filters

router = APIRouter(prefix="/v1/queries", tags=["queries"])


def runnable(engine: SearchEngine, entry: QueryLog, kept: tuple[str, dict[str, Any]] | None) -> str | None:
    """Why a logged query cannot run again on the engine's build (None: it can)."""
    if kept is None:
        return f"query {entry.uid} kept no vectors to search with (it was made before searches kept them)"
    version, vectors = kept
    build = engine.build
    if version != build.version or set(vectors) != set(CHANNELS) or vectors[SHAPE].shape != (build.shape.dim,):
        return f"query {entry.uid} was searched with bundle version {version}; the active index is of {build.version}"
    return None


def query_again(entry: QueryLog, vectors: dict[str, Any], weights: ChannelWeights | None, exclude: tuple[int, ...],
                keep: tuple[int, ...]) -> Query:
    return Query(None, entry.k, Filters.from_record(entry.filters), weights=weights, vectors=vectors, exclude=exclude, keep=keep)


def logged_weights(engine: SearchEngine, entry: QueryLog) -> ChannelWeights | None:
    """The weights a logged query ranked by: a refinement's recorded ones, a sign search's (the appearance
    channel weighed as its signs need, `SearchEngine.weights_for`), else None (the build's own)."""
    recorded = (entry.feedback or {}).get("weights")
    if recorded is not None:
        return ChannelWeights(**recorded)
    if entry.signs and engine.models.signs is not None:
        return engine.weights_for(Query(None, vectors={}), logged_strengths(entry), engine.build)
    return None


def logged_strengths(entry: QueryLog) -> dict[str, float]:
    """The {sign: strength} a logged query applied (a refinement or reopening: its first search's)."""
    return {record["sign"]: float(record["strength"]) for record in entry.signs or ()}


def _prepare(service: Service, session: Session, key: ApiKey, query_id: str,
             marks: MarksIn) -> tuple[Query, dict[str, Any], list[dict[str, Any]]]:
    """Check the marks against the query's hits and compute the refined query (404/409/422 otherwise);
    with the refinement's feedback record and the signs it keeps (its first search's)."""
    like, unlike = sorted(set(marks.like)), sorted(set(marks.unlike))
    if not like and not unlike:
        raise HTTPException(422, "mark at least one hit as right (like) or not this (unlike)")
    if set(like) & set(unlike):
        raise HTTPException(422, f"hits marked both right and not this: {sorted(set(like) & set(unlike))}")
    engine = service.engine()
    with session.begin():
        entry = owned_query(session, query_id, key.id)
        if entry is None:
            raise HTTPException(404, f"no query with id {query_id}")
        like, strangers = marks_as_shown([int(record["image_id"]) for record in entry.results], like, unlike)
        if strangers:
            raise HTTPException(422, f"ids not among query {query_id}'s results: {strangers}")
        kept = query_vectors_of(session, entry)
        session.expunge(entry)
    problem = runnable(engine, entry, kept)
    if problem is not None or kept is None:
        raise HTTPException(409, f"{problem}: search again to refine")
    previous = entry.feedback or {}
    weights = logged_weights(engine, entry) or engine.build.weights
    step = refined(engine, engine.build, kept[1], weights, like, unlike, tuple(previous.get("exclude", ())),
                   tuple(previous.get("keep", ())))
    return (query_again(entry, step.vectors, step.weights, step.exclude, step.keep),
            feedback_record(like, unlike, step.exclude, step.keep, asdict(step.weights)), list(entry.signs or []))


def _chain(session: Session, uid: str) -> list[RefinementOut]:
    """The first search and each step after it up to query `uid`."""
    with session.begin():
        entry = store.get_query(session, uid)
        if entry is None:
            return []
        return [RefinementOut(query_id=step.uid or "", kind=step.kind, like=(step.feedback or {}).get("like", []),
                              unlike=(step.feedback or {}).get("unlike", []), weights=(step.feedback or {}).get("weights"))
                for step in refinement_chain(session, entry)]


@router.post("/{query_id}/refine", response_model=RefineOut)
async def refine(query_id: str, marks: MarksIn, request: Request, service: ServiceDep, session: SessionDep,
                 key: SearchKey) -> RefineOut:
    """The query's search again, moved toward the hits marked right and away from those marked not
    this (which never come back in it); the hits marked right come first, and once a hit is marked right the
    search ranks by the channel weights chosen for refined searches (retrieval/feedback.py)."""
    started = time.perf_counter()
    query, feedback, signs = await run_in_threadpool(_prepare, service, session, key, query_id, marks)
    result = await service.batcher.submit(query)
    uid = uuid.uuid4().hex
    fields = await run_in_threadpool(answer, service, session, key, client_address(request), uid, query, result, started,
                                     "refine", query_id, feedback, signs=signs)
    return RefineOut(**fields, parent_query_id=query_id, refinements=await run_in_threadpool(_chain, session, uid))
