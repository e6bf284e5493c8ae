"""A read-only QIDO-RS facade over one query's results, so a DICOMweb viewer lists exactly the matches.

`/dicomweb/results/{query_id}/studies`, `.../studies/{study}/series`,
`.../studies/{study}/series/{series}/instances` answer `application/dicom+json` (PS3.18 F.2) with
the QIDO parameters a viewer sends: `limit`, `offset`, `includefield` (the attributes below are
always included), and matching on the UIDs. Pixels stay in the hospital PACS: each instance
carries its WADO-RS RetrieveURL there when a template is configured. Studies come in rank order
of their best match.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import SearchKey, ServiceDep, SessionDep, client_address
from api.routes.queries import logged_query
from api.service import Service
from api.views import url_from_template
from indexing.models import ApiKey, Image

router = APIRouter(prefix="/dicomweb/results/{query_id}", tags=["dicomweb"])
DICOM_JSON = "application/dicom+json"
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
MODALITY = "XC"


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values and values[0] not in (None, "") else {"vr": vr}


def _ranked_rows(session: Session, key: ApiKey, request: Request, query_id: str) -> list[Image]:
    """The live result rows with DICOM UIDs, in rank order, of a query `key` may read; the read is audited."""
    entry, rows = logged_query(session, key, query_id, "qido", client_address(request))
    ranked = [rows[int(record["image_id"])] for record in entry.results if int(record["image_id"]) in rows]
    return [row for row in ranked if row.study_uid and row.series_uid and row.sop_uid]


def _matching(rows: list[Image], request: Request) -> list[Image]:
    for attribute, column in (("StudyInstanceUID", "study_uid"), ("SeriesInstanceUID", "series_uid"), ("SOPInstanceUID", "sop_uid")):
        for name in (attribute, {"study_uid": "0020000D", "series_uid": "0020000E", "sop_uid": "00080018"}[column]):
            wanted = request.query_params.get(name)
            if wanted:
                allowed = {uid.strip() for uid in wanted.replace("\\", ",").split(",")}
                rows = [row for row in rows if getattr(row, column) in allowed]
    return rows


def _page(items: list[dict[str, Any]], offset: int, limit: int | None) -> Response:
    chosen = items[offset:] if limit is None else items[offset : offset + limit]
    return JSONResponse(chosen, media_type=DICOM_JSON)


def _study(rows: list[Image]) -> dict[str, Any]:
    first = rows[0]
    return {
        "00080020": _element("DA", first.acquired_at.strftime("%Y%m%d") if first.acquired_at else None),
        "00080061": _element("CS", MODALITY),
        "00100020": _element("LO", first.patient_ref),
        "0020000D": _element("UI", first.study_uid),
        "00201206": _element("IS", len({row.series_uid for row in rows})),
        "00201208": _element("IS", len(rows)),
    }


def _series(rows: list[Image]) -> dict[str, Any]:
    first = rows[0]
    return {
        "00080060": _element("CS", MODALITY),
        "0020000D": _element("UI", first.study_uid),
        "0020000E": _element("UI", first.series_uid),
        "00201209": _element("IS", len(rows)),
    }


def _instance(service: Service, row: Image) -> dict[str, Any]:
    retrieve = url_from_template(service.settings.wado_url, row.study_uid, row.series_uid, row.sop_uid)
    return {
        "00080016": _element("UI", VL_PHOTOGRAPHIC),
        "00080018": _element("UI", row.sop_uid),
        "00080060": _element("CS", MODALITY),
        "0020000D": _element("UI", row.study_uid),
        "0020000E": _element("UI", row.series_uid),
        **({"00081190": _element("UR", retrieve)} if retrieve else {}),
    }


def _grouped(rows: list[Image], column: str) -> list[list[Image]]:
    groups: dict[str, list[Image]] = {}
    for row in rows:
        groups.setdefault(getattr(row, column), []).append(row)
    return list(groups.values())


Limit = Query(None, ge=1, le=10_000)
Offset = Query(0, ge=0)
IncludeField = Query(None, description="accepted; every attribute this facade has is always included")


@router.get("/studies", response_class=Response, responses={200: {"content": {DICOM_JSON: {}}}})
async def studies(query_id: str, request: Request, session: SessionDep, key: SearchKey, limit: int | None = Limit,
                  offset: int = Offset, includefield: list[str] | None = IncludeField) -> Response:
    rows = _matching(await run_in_threadpool(_ranked_rows, session, key, request, query_id), request)
    return _page([_study(group) for group in _grouped(rows, "study_uid")], offset, limit)


@router.get("/studies/{study}/series", response_class=Response, responses={200: {"content": {DICOM_JSON: {}}}})
async def series(query_id: str, study: str, request: Request, session: SessionDep, key: SearchKey,
                 limit: int | None = Limit, offset: int = Offset, includefield: list[str] | None = IncludeField) -> Response:
    rows = _matching(await run_in_threadpool(_ranked_rows, session, key, request, query_id), request)
    return _page([_series(group) for group in _grouped([r for r in rows if r.study_uid == study], "series_uid")], offset, limit)


@router.get("/studies/{study}/series/{series_uid}/instances", response_class=Response,
            responses={200: {"content": {DICOM_JSON: {}}}})
async def instances(query_id: str, study: str, series_uid: str, request: Request, service: ServiceDep,
                    session: SessionDep, key: SearchKey,
                    limit: int | None = Limit, offset: int = Offset,
                    includefield: list[str] | None = IncludeField) -> Response:
    rows = _matching(await run_in_threadpool(_ranked_rows, session, key, request, query_id), request)
    chosen = [row for row in rows if row.study_uid == study and row.series_uid == series_uid]
    return _page([_instance(service, row) for row in chosen], offset, limit)
