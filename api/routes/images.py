"""Archive cases: metadata, thumbnail, stored picture, synthesized sketch, and the tracing template.

Every read of a case's data needs a search key and is written to the access log. Files are found
by the row's stored path, never by anything in the request.
"""

from __future__ import annotations

import io

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from api.deps import EngineDep, SearchKey, ServiceDep, SessionDep, client_address
from api.schemas import ExampleOut, ImageOut
from api.views import image_out
from indexing import store
from indexing.models import ApiKey, Image

router = APIRouter(prefix="/v1/images", tags=["images"])
PNG = "image/png"


def live_image(session: Session, image_id: int) -> Image:
    """The live row of `image_id` (404 otherwise)."""
    with session.begin():
        row = store.get_image(session, image_id)
    if row is None:
        raise HTTPException(404, f"no archive image with id {image_id}")
    return row


def _audited(session: Session, key: ApiKey, request: Request, action: str, image_id: int) -> Image:
    row = live_image(session, image_id)
    with session.begin():
        store.log_access(session, key.id, action, client_address(request), image_id=image_id)
    return row


@router.get("/example", response_model=ExampleOut)
async def example(service: ServiceDep, session: SessionDep, key: SearchKey) -> ExampleOut:
    """An archive case of the configured normal diagnosis, for the sketch pad's tracing template."""
    def first() -> Image | None:
        with session.begin():
            rows = store.list_images(session, limit=1, diagnosis=service.settings.example_diagnosis)
        return rows[0] if rows else None

    row = await run_in_threadpool(first)
    if row is None:
        raise HTTPException(404, f"the archive has no live case with diagnosis {service.settings.example_diagnosis!r}")
    return ExampleOut(image_id=row.id, diagnosis=row.diagnosis)


@router.get("/{image_id}", response_model=ImageOut)
async def metadata(image_id: int, request: Request, service: ServiceDep, session: SessionDep, key: SearchKey) -> ImageOut:
    row = await run_in_threadpool(_audited, session, key, request, "metadata", image_id)
    return image_out(service.settings, row)


@router.get("/{image_id}/thumbnail", response_class=Response, responses={200: {"content": {PNG: {}}}})
async def thumbnail(image_id: int, request: Request, service: ServiceDep, session: SessionDep, key: SearchKey) -> Response:
    def picture() -> bytes:
        row = _audited(session, key, request, "thumbnail", image_id)
        side = service.settings.thumbnail_side
        with PILImage.open(service.archive().files.absolute(row.stored_path)) as stored:
            small = stored.convert("RGB")
            small.thumbnail((side, side), PILImage.Resampling.BOX)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG")
        return buffer.getvalue()

    return Response(await run_in_threadpool(picture), media_type=PNG)


@router.get("/{image_id}/file", response_class=Response, responses={200: {"content": {PNG: {}}}})
async def file(image_id: int, request: Request, service: ServiceDep, session: SessionDep, key: SearchKey) -> Response:
    def stored() -> bytes:
        row = _audited(session, key, request, "file", image_id)
        return service.archive().files.absolute(row.stored_path).read_bytes()

    return Response(await run_in_threadpool(stored), media_type=PNG)


@router.get("/{image_id}/sketch", response_class=Response, responses={200: {"content": {PNG: {}}}})
async def sketch(image_id: int, request: Request, session: SessionDep, engine: EngineDep, key: SearchKey) -> Response:
    """The case's sketch as S synthesized it for the served bundle (what the shape and latent channels matched)."""
    def stored() -> bytes:
        _audited(session, key, request, "sketch", image_id)
        with session.begin():
            png = store.get_sketch(session, image_id, engine.version)
        if png is None:
            raise HTTPException(404, f"archive image {image_id} has no synthesized sketch for the served bundle yet")
        return png

    return Response(await run_in_threadpool(stored), media_type=PNG)
