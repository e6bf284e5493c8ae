"""`POST /v1/search` (a sketch) and `POST /v1/images/{id}/similar` (an archive case's own vectors):
ranked cases through the micro-batcher, each search written to the query log."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.routes.images import live_image
from api.deps import EngineDep, SearchKey, ServiceDep, SessionDep, client_address
from api.schemas import SearchIn, SearchOut, SignOut, SimilarIn
from api.service import Service
from api.sketch_input import read_sketch_request
from api.views import filters_from, hit_out, result_record
from formats.sketch import CanonicalSketch
from indexing import store
from indexing.models import ApiKey
from indexing.pictures import Pictures, put_pictures
from indexing.searches import PREVIEW, put_query_vectors
from retrieval.engine import Query, SearchResult
from retrieval.percentiles import NO_REFERENCE

router = APIRouter(prefix="/v1", tags=["search"])

SKETCH_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["sketch"], "properties": {
                "sketch": {"type": "string", "format": "binary"}, "k": {"type": "integer"}, "refine": {"type": "boolean"}, "preview": {"type": "boolean"},
                "signs": {"type": "string", "description": 'JSON text {sign: strength in [-1, 1] (below 0: absent), "present" or "absent"}, e.g. {"exudate": 1, "cobblestoning": "absent"}'},
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
    engine.models.sign_strengths(asked.signs)  # unknown signs or strengths: 422 listing the known signs
    sketch = await run_in_threadpool(CanonicalSketch.of, asked.sketch, engine.resolution)
    query = Query(sketch, asked.k, filters_from(asked.filters, service.settings.archive), refine=asked.refine, signs=asked.signs)
    result = await service.batcher.submit(query)
    pictures = Pictures(result.sketch, result.steps)
    return SearchOut(**await run_in_threadpool(answer, service, session, key, client_address(request), uuid.uuid4().hex,
                                               query, result, started, PREVIEW if asked.preview else "sketch", pictures=pictures))


@router.post("/images/{image_id}/similar", response_model=SearchOut)
async def similar(image_id: int, request: Request, service: ServiceDep, session: SessionDep, engine: EngineDep, key: SearchKey,
                  body: SimilarIn | None = None) -> SearchOut:
    """"More like this": the cases closest to archive case `image_id` by its own stored vectors (no networks)."""
    started = time.perf_counter()
    body = body or SimilarIn()
    await run_in_threadpool(live_image, session, image_id)  # 404 for an unknown or deleted case
    query = Query(None, body.k, filters_from(body.filters, service.settings.archive), like=image_id)
    result = await service.batcher.submit(query)
    return SearchOut(**await run_in_threadpool(answer, service, session, key, client_address(request), uuid.uuid4().hex,
                                               query, result, started, "example"))


def answer(service: Service, session: Session, key: ApiKey, client: str | None, uid: str, query: Query,
           result: SearchResult, started: float, kind: str, parent_uid: str | None = None,
           feedback: dict[str, Any] | None = None, pictures: Pictures | None = None,
           signs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Log the search (ids and scores only) with its query's channel vectors (so it can be refined and
    reopened), a sketch search's pictures (for their URLs, on any replica) and its signs (`signs`: a
    refinement's or reopening's first search's; None: the result's own), and build the response's
    fields from the hits (read with the ranking)."""
    ids = [hit.image_id for hit in result.hits]
    signs = [applied.as_record() for applied in result.signs] if signs is None else signs
    engine = service.engine()
    weights = engine.weights_for(query, engine.models.sign_strengths(query.signs), engine.build)  # a sign query's own
    with session.begin():
        latency = (time.perf_counter() - started) * 1000.0
        entry = store.log_query(session, key.id, query.k, latency, ids, query.filters.as_record(), uid=uid, client=client,
                                kind=kind, build_id=result.build_id, results=[result_record(hit) for hit in result.hits],
                                timings_ms={stage: round(ms, 3) for stage, ms in result.timings_ms.items()}, signs=signs)
        entry.parent_uid, entry.feedback = parent_uid, feedback
        put_query_vectors(session, entry, engine.version, result.vectors)
        if pictures is not None:
            put_pictures(session, entry, pictures)
    if pictures is not None:
        service.sweep_pictures_when_due(session)
    reference = service.references().of(result.build_id)
    drawn = kind in ("sketch", PREVIEW)
    base = f"/v1/queries/{uid}"
    return dict(
        query_id=uid, build_id=result.build_id, k=query.k, refined=drawn and query.refine and len(result.steps) > 1,
        results=[hit_out(service.settings, hit, reference, weights) for hit in result.hits],
        weights=asdict(weights), percentiles_note=None if reference is not None else NO_REFERENCE,
        timings_ms={stage: round(ms, 3) for stage, ms in result.timings_ms.items()},
        sketch_url=f"{base}/sketch" if drawn else None,
        generated_image_url=f"{base}/generated" if drawn else None,
        step_urls=[f"{base}/steps/{t}" for t in range(len(result.steps))],
        signs=[SignOut(**record) for record in signs],
    )
