"""The FastAPI app: `create_app(settings)` builds it; models load in its lifespan, once per worker.

Routes are thin (`api/routes/`), dependencies injected (`api/deps.py`), schemas apart from the ORM
(`api/schemas.py`), every error one JSON sentence (`api/errors.py`). The web sketch pad, when its
folder `api/web/` exists, is served at `/`. OpenAPI at `/docs`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from api import errors
from api.access_log import drop_query_strings
from api.limits import BodyLimitMiddleware
from api.metrics import RequestMetricsMiddleware
from api.routes import dicomweb, generate, health, images, index, queries, refine, saved, search, viewer
from api.service import Service
from api.settings import ServiceSettings

VERSION = "1"


def create_app(settings: ServiceSettings) -> FastAPI:
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start_engine)
        service.batcher.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="Sketch2MedI", version=VERSION, lifespan=lifespan,
                  description="Sketch-based retrieval of pharyngeal photographs, with a DICOMweb (QIDO-RS) facade.")
    app.state.service = service
    errors.install(app)
    drop_query_strings()
    for router in (search.router, generate.router, images.router, queries.router, refine.router, saved.router, index.router,
                   dicomweb.router, viewer.router, health.router):
        app.include_router(router)

    app.add_middleware(errors.UnforeseenErrorMiddleware)  # innermost: its 500 passes the metrics and CORS
    app.add_middleware(RequestMetricsMiddleware, metrics=service.metrics)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    if settings.cors_origins:  # outermost but Starlette's own error middleware: every answer gets the headers
        app.add_middleware(errors.JsonCORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Accept", "Authorization", "Content-Type"],
                           expose_headers=["Retry-After", "WWW-Authenticate"])
    if settings.web_dir.is_dir():
        app.mount("/", StaticFiles(directory=settings.web_dir, html=True), name="web")
    return app


def app_from_env() -> FastAPI:
    """The app of this process's environment (what `s2m serve` runs in each worker)."""
    return create_app(ServiceSettings.from_env())
