"""`/healthz` (the process answers), `/readyz` (database, index and models usable), `/metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import ServiceDep
from api.metrics import CONTENT_TYPE
from api.schemas import HealthOut
from api.service import Service, ServiceUnavailableError
from indexing.db import ensure_current

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    return HealthOut(status="alive")


def _checks(service: Service) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        ensure_current(service.archive().engine)  # reachable, and the archive's schema (not an empty file put in its place)
        checks["database"] = "ok"
    except Exception:  # noqa: BLE001 (any failure means not ready; the reason is below)
        checks["database"] = "unavailable"
    try:
        service.models()
        checks["models"] = "ok"
    except ServiceUnavailableError as error:
        checks["models"] = f"unavailable: {error}"
    try:
        engine = service.engine()
        checks["index"] = f"ok: build {engine.build.build_id}, {engine.build.ntotal} vectors"
    except ServiceUnavailableError as error:
        checks["index"] = f"unavailable: {error}"
    return checks


@router.get("/readyz", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def readyz(service: ServiceDep) -> Response:
    checks = await run_in_threadpool(_checks, service)
    ready = all(value.startswith("ok") for value in checks.values())
    body = HealthOut(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(service: ServiceDep) -> Response:
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)
