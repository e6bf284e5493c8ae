"""`GET /v1/index` (the active build and what the service serves) and `POST /v1/index/refresh` (admin)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import AdminKey, SearchKey, ServiceDep
from api.schemas import IndexOut, RefreshOut

router = APIRouter(prefix="/v1/index", tags=["index"])


@router.get("", response_model=IndexOut)
async def status(service: ServiceDep, key: SearchKey) -> IndexOut:
    from indexing.fused_index import index_status

    state = await run_in_threadpool(index_status, service.archive())
    serving = service.engine().build.build_id if service.engine_loaded else None
    fields = asdict(state)
    return IndexOut(build_id=fields["build_id"], bundle_version=fields["version"], factory=fields["factory"],
                    vectors=fields["vector_count"], weights=fields["weights"], created_at=fields["created_at"],
                    live_images=fields["live_images"], not_indexed=fields["not_indexed"], serving_build_id=serving)


@router.post("/refresh", response_model=RefreshOut)
async def refresh(service: ServiceDep, key: AdminKey) -> RefreshOut:
    """Embed images added since the active build, activate a refreshed build and serve it (searches keep running)."""
    report = await asyncio.to_thread(service.refresh_index)
    return RefreshOut(build_id=report.build.id, added=report.added, removed=report.removed, rebuilt=report.rebuilt)
