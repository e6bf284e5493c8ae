"""A read-only QIDO-RS facade over one query's results, so a DICOMweb viewer lists exactly the matches.

`/dicomweb/results/{query_id}/studies`, `.../studies/{study}/series`,
`.../studies/{study}/series/{series}/instances` answer `application/dicom+json` (PS3.18 F.2) with
the QIDO parameters OHIF and dicomweb-client send: matching keys, `includefield` (repeated or
comma-separated, `all`), `limit`, `offset` (api/qido/matching.py). Items come in the query's rank
order, which filtering and paging never change, and carry their rank and score (api/qido/datasets.py,
docs/qido.md). Pixels stay in the hospital PACS: each instance carries its WADO-RS RetrieveURL
there when a template is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import SearchKey, ServiceDep, SessionDep, client_address
from api.qido import datasets
from api.qido.attributes import INSTANCE, SERIES, STUDY
from api.qido.matching import QidoQuery, Values, parse
from api.routes.queries import logged_query, logged_ranked
from api.views import url_from_template
from indexing.models import ApiKey
from retrieval.results import Hit

router = APIRouter(prefix="/dicomweb/results/{query_id}", tags=["dicomweb"])
DICOM_JSON = "application/dicom+json"
ANSWERS: dict[int | str, dict[str, Any]] = {200: {"content": {DICOM_JSON: {}}}}

Limit = Query(None, ge=1, le=10_000, description="at most this many items, after matching")
Offset = Query(0, ge=0, description="skip this many matching items (rank order)")
IncludeField = Query(None, description="attributes beyond the defaults: keywords or tags, repeated or comma-separated, or `all`")


def _ranked_hits(session: Session, key: ApiKey, request: Request, query_id: str) -> tuple[list[Hit], int]:
    """The live hits with DICOM UIDs of a query `key` may read, in rank order, and how many live hits
    it ranks in all (their ranks count every live hit, as `/v1/queries/{id}` numbers them); audited."""
    entry, rows = logged_query(session, key, query_id, "qido", client_address(request))
    ranked = logged_ranked(entry, rows)
    return [hit for hit in ranked if hit.case.study_uid and hit.case.series_uid and hit.case.sop_uid], len(ranked)


async def _answer(session: Session, key: ApiKey, request: Request, query_id: str, level: str, offset: int,
                  limit: int | None, items: Callable[[list[Hit], int], list[Values]]) -> Response:
    query: QidoQuery = parse(request.query_params.multi_items())  # a malformed key: 422 before any read
    hits, total = await run_in_threadpool(_ranked_hits, session, key, request, query_id)
    matching = [item for item in items(hits, total) if query.matches(item, level)]
    chosen = matching[offset:] if limit is None else matching[offset: offset + limit]
    returned = query.returned(level)
    return JSONResponse([datasets.dicom_json(item, returned) for item in chosen], media_type=DICOM_JSON)


@router.get("/studies", response_class=Response, responses=ANSWERS)
async def studies(query_id: str, request: Request, session: SessionDep, key: SearchKey, limit: int | None = Limit,
                  offset: int = Offset, includefield: list[str] | None = IncludeField) -> Response:
    """The query's studies, each where its best hit ranks."""
    return await _answer(session, key, request, query_id, STUDY, offset, limit, datasets.studies)


@router.get("/studies/{study}/series", response_class=Response, responses=ANSWERS)
async def series(query_id: str, study: str, request: Request, session: SessionDep, key: SearchKey,
                 limit: int | None = Limit, offset: int = Offset, includefield: list[str] | None = IncludeField) -> Response:
    """The series of one of the query's studies that hold its hits."""
    return await _answer(session, key, request, query_id, SERIES, offset, limit,
                         lambda hits, total: datasets.series(hits, total, study))


@router.get("/studies/{study}/series/{series_uid}/instances", response_class=Response, responses=ANSWERS)
async def instances(query_id: str, study: str, series_uid: str, request: Request, service: ServiceDep,
                    session: SessionDep, key: SearchKey, limit: int | None = Limit, offset: int = Offset,
                    includefield: list[str] | None = IncludeField) -> Response:
    """The query's hits in one series, in rank order, each with its RetrieveURL in the PACS."""
    def retrieve(hit: Hit) -> str | None:
        return url_from_template(service.settings.wado_url, hit.case.study_uid, hit.case.series_uid, hit.case.sop_uid)

    return await _answer(session, key, request, query_id, INSTANCE, offset, limit,
                         lambda hits, total: datasets.instances(hits, total, study, series_uid, retrieve))
