"""`POST /v1/search` (a sketch) and `POST /v1/images/{id}/similar` (an archive case's own vectors):
ranked cases through the micro-batcher, each search written to the query log."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.routes.images import live_image
from api.deps import EngineDep, SearchKey, ServiceDep, SessionDep, client_address
from api.schemas import SearchIn, SearchOut, SimilarIn
from api.service import Generated, Service
from api.sketch_input import read_sketch_request
from api.views import filters_from, hit_out, result_record
from formats.sketch import CanonicalSketch
from indexing import store
from indexing.models import ApiKey
from retrieval.engine import Query, SearchResult

router = APIRouter(prefix="/v1", tags=["search"])

SKETCH_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["sketch"], "properties": {
                "sketch": {"type": "string", "format": "binary"}, "k": {"type": "integer"}, "refine": {"type": "boolean"},
                "diagnosis": {"type": "array", "items": {"type": "string"}},
                "finding": {"type": "array", "items": {"type": "string"}},
                "exclude_patient": {"type": "array", "items": {"type": "string"}},
                "date_from": {"type": "string", "format": "date"}, "date_to": {"type": "string", "format": "date"},
            }}},
            "application/json": {"schema": SearchIn.model_json_schema()},
        },
        "required": True,
    }
}


@router.post("/search", response_model=SearchOut, openapi_extra=SKETCH_BODY)
async def search(request: Request, service: ServiceDep, session: SessionDep, engine: EngineDep, key: SearchKey) -> SearchOut:
    """The archive cases closest to a sketch (uploaded picture or strokes), with every channel's score."""
    started = time.perf_counter()
    asked = await read_sketch_request(request)
    # canonical here, 422 before any model; the engine takes it as it is
    sketch = await run_in_threadpool(CanonicalSketch.of, asked.sketch, engine.resolution)
    query = Query(sketch, asked.k, filters_from(asked.filters, service.settings.archive.pseudonym_hex_chars), refine=asked.refine)
    result = await service.batcher.submit(query)
    uid = uuid.uuid4().hex
    service.keep_generated(uid, Generated(result.sketch, result.steps, key.id))
    return await run_in_threadpool(_answer, service, session, key, client_address(request), uid, query, result, started,
                                   "sketch")


@router.post("/images/{image_id}/similar", response_model=SearchOut)
async def similar(image_id: int, request: Request, service: ServiceDep, session: SessionDep, engine: EngineDep, key: SearchKey,
                  body: SimilarIn | None = None) -> SearchOut:
    """"More like this": the cases closest to archive case `image_id` by its own stored vectors (no networks)."""
    started = time.perf_counter()
    body = body or SimilarIn()
    await run_in_threadpool(live_image, session, image_id)  # 404 for an unknown or deleted case
    query = Query(None, body.k, filters_from(body.filters, service.settings.archive.pseudonym_hex_chars), like=image_id)
    result = await service.batcher.submit(query)
    return await run_in_threadpool(_answer, service, session, key, client_address(request), uuid.uuid4().hex, query, result,
                                   started, "example")


def _answer(service: Service, session: Session, key: ApiKey, client: str | None, uid: str, query: Query,
            result: SearchResult, started: float, kind: str) -> SearchOut:
    """Log the search (ids and scores only) and build the response from the hits (read with the ranking)."""
    ids = [hit.image_id for hit in result.hits]
    with session.begin():
        latency = (time.perf_counter() - started) * 1000.0
        store.log_query(session, key.id, query.k, latency, ids, query.filters.as_record(), uid=uid, client=client,
                        kind=kind, build_id=result.build_id, results=[result_record(hit) for hit in result.hits],
                        timings_ms={stage: round(ms, 3) for stage, ms in result.timings_ms.items()})
    drawn = kind == "sketch"
    base = f"/v1/queries/{uid}"
    return SearchOut(
        query_id=uid, build_id=result.build_id, k=query.k, refined=drawn and query.refine and len(result.steps) > 1,
        results=[hit_out(service.settings, hit) for hit in result.hits],
        timings_ms={stage: round(ms, 3) for stage, ms in result.timings_ms.items()},
        sketch_url=f"{base}/sketch" if drawn else None,
        generated_image_url=f"{base}/generated" if drawn else None,
        step_urls=[f"{base}/steps/{t}" for t in range(len(result.steps))],
    )
