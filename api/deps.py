"""The routes' injected dependencies (`Annotated`, as the FastAPI full-stack template has them).

`ServiceDep`, `SessionDep` (the one way a route gets a database session: the route owns the
transactions, each read or write in a `session.begin()` block, so none stays open while the route
awaits), `PipelineDep` (the query models, no index needed), `EngineDep`, and the
caller's key with a scope (`SearchKey`, `AdminKey`):
401 for a missing or bad key, 403 for a key without the scope, 429 past its rate limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Callable

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.service import Service
from generation.pipeline import QueryModels
from indexing import store
from indexing.models import ApiKey
from retrieval.engine import SearchEngine

BEARER = "bearer"


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_session(service: ServiceDep) -> Iterator[Session]:
    with service.archive().sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_models(service: ServiceDep) -> QueryModels:
    return service.models()


PipelineDep = Annotated[QueryModels, Depends(get_models)]


def get_engine(service: ServiceDep) -> SearchEngine:
    return service.engine()


EngineDep = Annotated[SearchEngine, Depends(get_engine)]


def _token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        raise HTTPException(401, "an API key is required: send it as `Authorization: Bearer <key>`",
                            headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def _verified(service: Service, token: str, scope: str) -> ApiKey:
    with service.archive().sessions() as session:
        key = store.verify_api_key(session, token, scope)
        if key is None:
            if scope != "search" and store.verify_api_key(session, token, "search") is not None:
                raise HTTPException(403, f"this API key lacks the {scope!r} scope")
            raise HTTPException(401, "the API key is not valid (unknown, revoked or malformed)",
                                headers={"WWW-Authenticate": "Bearer"})
        session.expunge(key)
        return key


def require_scope(scope: str) -> Callable[..., Any]:
    async def caller(request: Request, service: ServiceDep) -> ApiKey:
        key = await run_in_threadpool(_verified, service, _token(request), scope)
        wait = await run_in_threadpool(service.limiter.take, key.id)  # a database round trip on PostgreSQL
        if wait > 0:
            raise HTTPException(429, "this API key is over its rate limit; retry after the time given",
                                headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        return key

    return caller


SearchKey = Annotated[ApiKey, Depends(require_scope("search"))]
AdminKey = Annotated[ApiKey, Depends(require_scope("admin"))]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None
