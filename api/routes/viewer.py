"""`GET /viewer` and `GET /viewer/results/{query_id}`: the hits' viewer links, led to the OHIF viewer's port.

Why a redirect: a hit's `viewer_url` (the `S2M_VIEWER_URL` template, `/viewer?StudyInstanceUIDs=...`
by default) and the pad's "results in viewer" link are relative to the service, while `s2m serve
--viewer-port` serves OHIF at the root of an origin of its own. The service knows that port and the
host the browser used, so it sends the browser there; nothing is read and no key is needed.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse

from api.deps import ServiceDep

router = APIRouter(prefix="/viewer", tags=["viewer"])
QUERY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def viewer_origin(request: Request, port: int | None) -> str:
    """`scheme://host:port` of the viewer on the host this request came to; 404 when no viewer is served."""
    if port is None:
        raise HTTPException(404, "no viewer is served with this service: start it with `s2m serve --viewer-port PORT`")
    host = request.url.hostname or "127.0.0.1"
    return f"{request.url.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@router.get("", response_class=RedirectResponse, status_code=307)
async def open_study(request: Request, service: ServiceDep) -> RedirectResponse:
    """OHIF's viewer route with the same query string (`StudyInstanceUIDs`, and `query` for the query's study list)."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{viewer_origin(request, service.settings.viewer_port)}/viewer{query}", status_code=307)


@router.get("/results/{query_id}", response_class=RedirectResponse, status_code=307)
async def open_results(query_id: str, request: Request, service: ServiceDep) -> RedirectResponse:
    """OHIF's worklist, listing the query's matches (through the per-query QIDO facade) in rank order."""
    if not QUERY_ID.fullmatch(query_id):
        raise HTTPException(404, f"no query with id {query_id[:64]}")
    target = f"{viewer_origin(request, service.settings.viewer_port)}/?{urlencode({'query': query_id})}"
    return RedirectResponse(target, status_code=307)
