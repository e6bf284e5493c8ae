"""Past queries from the audit log (for the viewer and the audit), the caller's recent searches, and
their generated pictures.

A query and everything derived from it (its results, pictures, sketch, steps and QIDO facade)
belong to the key that ran it: any other search key gets the same 404 as for an unknown id, so
it cannot even learn that the query exists. An `admin` key reads every query, and each such read
of another key's query is written to the access log as `admin:<what>`.

The pictures (the canonical query sketch, x_0 .. x_T) of a sketch search are kept in the database
beside its log row (`indexing/pictures.py`), so every replica serves them, until the retention
sweep removes them; the query log itself never holds pixels."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.deps import SearchKey, ServiceDep, SessionDep, client_address
from api.schemas import HitOut, QueryOut, RecentOut, SignOut, TopHitOut
from api.service import Service
from api.views import hit_from_record, hit_out
from indexing import store
from indexing.models import ApiKey, Image, QueryLog
from indexing.pictures import Pictures, pictures_of
from indexing.searches import Recent, recent_queries
from indexing.vectors import encode_png
from retrieval.results import Hit

router = APIRouter(prefix="/v1/queries", tags=["queries"])
PNG = "image/png"
ADMIN_SCOPE = "admin"
TOP = 3  # hits a recent search shows
DEFAULT_RECENT, MAX_RECENT = 20, 100


def _readable_by(key: ApiKey, owner_id: int | None) -> bool:
    return owner_id == key.id or ADMIN_SCOPE in key.scopes


def _audit(session: Session, key: ApiKey, action: str, client: str | None, query_id: str) -> None:
    with session.begin():
        store.log_access(session, key.id, action, client, query_uid=query_id)


def logged_query(session: Session, key: ApiKey, uid: str, action: str,
                 client: str | None) -> tuple[QueryLog, dict[int, Image]]:
    """The query's log row and its result rows that are still live; 404 for an unknown query or
    one another key ran (unless `key` is an admin key). The read is audited as `action`."""
    with session.begin():
        entry = store.get_query(session, uid)
        if entry is None or not _readable_by(key, entry.api_key_id):
            raise HTTPException(404, f"no query with id {uid}")
        ids = [int(record["image_id"]) for record in entry.results]
        rows = store.live_images(session, ids)
    _audit(session, key, action if entry.api_key_id == key.id else f"admin:{action}", client, uid)
    return entry, rows


def logged_ranked(entry: QueryLog, rows: dict[int, Image]) -> list[Hit]:
    """A logged query's results that are still live, ranked from 1 (scores as logged)."""
    live = [record for record in entry.results if int(record["image_id"]) in rows]
    return [hit_from_record(rank, record, rows[int(record["image_id"])]) for rank, record in enumerate(live, start=1)]


def logged_hits(service: Service, entry: QueryLog, rows: dict[int, Image]) -> list[HitOut]:
    """A logged query's live results as the API shows hits."""
    return [hit_out(service.settings, hit) for hit in logged_ranked(entry, rows)]


def _recent_out(recent: Recent) -> RecentOut:
    entry = recent.entry
    top = [TopHitOut(image_id=int(record["image_id"]), rank=rank, score=float(record["score"]))
           for rank, record in enumerate(entry.results[:TOP], start=1)]
    return RecentOut(query_id=entry.uid or "", created_at=entry.created_at, kind=entry.kind, k=entry.k, filters=entry.filters,
                     signs=[SignOut(**record) for record in entry.signs or ()], top=top, parent_query_id=entry.parent_uid,
                     sketch_url=f"/v1/queries/{entry.uid}/sketch" if recent.pictures_kept else None, saved=recent.saved)


@router.get("", response_model=list[RecentOut])
async def recent(session: SessionDep, key: SearchKey,
                 limit: int = Query(DEFAULT_RECENT, ge=1, le=MAX_RECENT)) -> list[RecentOut]:
    """The caller's own latest searches, newest first (an admin key's too: its own only); live previews left out."""
    def read() -> list[RecentOut]:
        with session.begin():
            return [_recent_out(found) for found in recent_queries(session, key.id, limit)]

    return await run_in_threadpool(read)


@router.get("/{query_id}", response_model=QueryOut)
async def past_query(query_id: str, request: Request, service: ServiceDep, session: SessionDep, key: SearchKey) -> QueryOut:
    def read() -> QueryOut:
        entry, rows = logged_query(session, key, query_id, "query", client_address(request))
        with session.begin():
            kept = pictures_of(session, entry)
        base = f"/v1/queries/{query_id}"
        return QueryOut(query_id=query_id, created_at=entry.created_at, kind=entry.kind, k=entry.k, filters=entry.filters,
                        build_id=entry.build_id, latency_ms=entry.latency_ms, results=logged_hits(service, entry, rows),
                        signs=[SignOut(**record) for record in entry.signs or ()], parent_query_id=entry.parent_uid,
                        sketch_url=None if kept is None else f"{base}/sketch",
                        generated_image_url=None if kept is None else f"{base}/generated",
                        step_urls=[] if kept is None else [f"{base}/steps/{t}" for t in range(len(kept.steps))])

    return await run_in_threadpool(read)


async def _generated(session: Session, key: ApiKey, request: Request, query_id: str, action: str) -> Pictures:
    """The kept pictures of a query `key` ran (an admin key: any query, audited); 404 otherwise."""

    def read() -> Pictures:
        with session.begin():
            entry = store.get_query(session, query_id)
            kept = None if entry is None or not _readable_by(key, entry.api_key_id) else pictures_of(session, entry)
        if kept is None:
            raise HTTPException(404, f"no generated pictures kept for query {query_id} (only recent sketch searches keep them)")
        if entry.api_key_id != key.id:
            _audit(session, key, f"admin:{action}", client_address(request), query_id)
        return kept

    return await run_in_threadpool(read)


@router.get("/{query_id}/generated", response_class=Response, responses={200: {"content": {PNG: {}}}})
async def generated(query_id: str, request: Request, session: SessionDep, key: SearchKey) -> Response:
    """The generated image x_T of a recent sketch search (x_0 when it was not refined)."""
    kept = await _generated(session, key, request, query_id, "generated")
    return Response(encode_png(kept.steps[-1]), media_type=PNG)


@router.get("/{query_id}/steps/{step}", response_class=Response, responses={200: {"content": {PNG: {}}}})
async def step(query_id: str, step: int, request: Request, session: SessionDep, key: SearchKey) -> Response:
    """x_step of a recent sketch search: 0 is G(w), 1 .. T are H's refinements."""
    steps = (await _generated(session, key, request, query_id, "step")).steps
    if not 0 <= step < len(steps):
        raise HTTPException(404, f"query {query_id} has steps 0 to {len(steps) - 1}")
    return Response(encode_png(steps[step]), media_type=PNG)


@router.get("/{query_id}/sketch", response_class=Response, responses={200: {"content": {PNG: {}}}})
async def query_sketch(query_id: str, request: Request, session: SessionDep, key: SearchKey) -> Response:
    """The canonical sketch the models read for a recent sketch search."""
    kept = await _generated(session, key, request, query_id, "sketch")
    return Response(encode_png(kept.sketch), media_type=PNG)
