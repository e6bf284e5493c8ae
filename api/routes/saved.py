"""Saved searches: `POST /v1/queries/{id}/save` keeps one of the caller's searches under a name,
`GET /v1/saved` lists the caller's own, `GET /v1/saved/{id}` reopens one (searched again on the
active build, with a note when the build changed), `DELETE /v1/saved/{id}` forgets it. Another
key's saved search is 404, as an unknown one is."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.deps import SearchKey, ServiceDep, SessionDep, client_address
from api.routes.queries import logged_hits, logged_query
from api.routes.refine import logged_weights, query_again, runnable
from api.routes.search import answer
from api.schemas import ReopenOut, SavedOut, SaveIn, SignOut
from api.service import Service
from indexing.models import ApiKey, QueryLog, SavedSearch
from indexing.searches import feedback_record, owned_query, owned_saved, query_vectors_of, save_search, saved_searches
from retrieval.engine import Query

router = APIRouter(prefix="/v1", tags=["saved"])
TOP = 3


def saved_out(saved: SavedSearch, entry: QueryLog) -> SavedOut:
    return SavedOut(saved_id=saved.id, name=saved.name, query_id=entry.uid or "", kind=entry.kind, created_at=saved.created_at,
                    searched_at=entry.created_at, build_id=entry.build_id, filters=entry.filters, top_ids=entry.result_ids[:TOP])


@router.post("/queries/{query_id}/save", response_model=SavedOut, status_code=201)
async def save(query_id: str, body: SaveIn, session: SessionDep, key: SearchKey) -> SavedOut:
    """Keep one of the caller's searches under a name."""
    def write() -> SavedOut:
        with session.begin():
            entry = owned_query(session, query_id, key.id)
            if entry is None:
                raise HTTPException(404, f"no query with id {query_id}")
            return saved_out(save_search(session, key.id, entry, " ".join(body.name.split())), entry)

    return await run_in_threadpool(write)


@router.get("/saved", response_model=list[SavedOut])
async def saved_list(session: SessionDep, key: SearchKey) -> list[SavedOut]:
    """The caller's saved searches, newest first."""
    def read() -> list[SavedOut]:
        with session.begin():
            return [saved_out(saved, entry) for saved, entry in saved_searches(session, key.id)]

    return await run_in_threadpool(read)


@router.delete("/saved/{saved_id}", status_code=204, response_class=Response)
async def forget(saved_id: int, session: SessionDep, key: SearchKey) -> Response:
    def delete() -> None:
        with session.begin():
            found = owned_saved(session, saved_id, key.id)
            if found is None:
                raise HTTPException(404, f"no saved search with id {saved_id}")
            session.delete(found[0])

    await run_in_threadpool(delete)
    return Response(status_code=204)


def _plan(service: Service, session: Session, key: ApiKey,
          saved_id: int) -> tuple[SavedOut, QueryLog, Query | None, str | None]:
    """The saved search, its query, and either the query to run again or why it cannot run (its hits as saved then)."""
    engine = service.engine()
    with session.begin():
        found = owned_saved(session, saved_id, key.id)
        if found is None:
            raise HTTPException(404, f"no saved search with id {saved_id}")
        saved, entry = found
        out, kept = saved_out(saved, entry), query_vectors_of(session, entry)
        session.expunge(entry)
    problem = runnable(engine, entry, kept)
    if problem is not None or kept is None:
        return out, entry, None, f"{problem}: the hits are shown as they were saved, not searched again"
    previous = entry.feedback or {}
    return out, entry, query_again(entry, kept[1], logged_weights(engine, entry), tuple(previous.get("exclude", ())),
                                   tuple(previous.get("keep", ()))), None


def _as_saved(service: Service, session: Session, key: ApiKey, client: str | None, out: SavedOut, entry: QueryLog,
              note: str | None) -> ReopenOut:
    """The saved search's hits as they were logged (audited as a read of that query)."""
    logged, rows = logged_query(session, key, out.query_id, "saved", client)
    return ReopenOut(query_id=out.query_id, build_id=entry.build_id or 0, k=entry.k, refined=False,
                     results=logged_hits(service, logged, rows), timings_ms={},
                     sketch_url=None, generated_image_url=None, step_urls=[], note=note, saved=out,
                     signs=[SignOut(**record) for record in entry.signs or ()])


@router.get("/saved/{saved_id}", response_model=ReopenOut)
async def reopen(saved_id: int, request: Request, service: ServiceDep, session: SessionDep, key: SearchKey) -> ReopenOut:
    """A saved search with its hits: searched again on the active build (a new query, which can be
    refined), or, when its vectors are of another bundle, its hits as they were saved."""
    started = time.perf_counter()
    out, entry, query, note = await run_in_threadpool(_plan, service, session, key, saved_id)
    if query is None:
        return await run_in_threadpool(_as_saved, service, session, key, client_address(request), out, entry, note)
    result = await service.batcher.submit(query)
    previous = entry.feedback or {}
    feedback = feedback_record((), (), query.exclude, query.keep, previous["weights"]) if "weights" in previous else None
    fields = await run_in_threadpool(answer, service, session, key, client_address(request), uuid.uuid4().hex, query, result,
                                     started, "reopen", entry.uid, feedback, signs=list(entry.signs or []))
    if entry.build_id != result.build_id:
        note = (f"the index has changed since this search was made (build {entry.build_id} then, {result.build_id} now): "
                "its hits were searched again on the current build")
    return ReopenOut(**fields, note=note, saved=out)
