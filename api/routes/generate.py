"""`POST /v1/generate`: a sketch's generated image, for talking a patient through a condition.

It touches no archive data (no index, no rows: it answers before any index build), yet needs a key
since it costs compute. It runs the process's query models (E, G, H), not the search engine. PNG of
x_T by default; `steps=true` gives every picture x_0 .. x_T as PNG data URLs; `format=dicom` a
Secondary Capture labelled synthetic (`api.dicom`)."""

from __future__ import annotations

import base64
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import PipelineDep, SearchKey, ServiceDep
from api.dicom import secondary_capture
from api.routes.search import SKETCH_BODY
from api.sketch_input import read_sketch_request
from formats.sketch import CanonicalSketch
from indexing.vectors import encode_png

router = APIRouter(prefix="/v1", tags=["generate"])
DICOM = "application/dicom"


@router.post("/generate", response_class=Response, openapi_extra=SKETCH_BODY,
             responses={200: {"content": {"image/png": {}, DICOM: {}, "application/json": {}}}})
async def generate(request: Request, service: ServiceDep, models: PipelineDep, key: SearchKey,
                   format: Literal["png", "dicom"] = Query("png"),  # noqa: A002 (the query parameter's name)
                   steps: bool = Query(False, description="every picture x_0 .. x_T (PNG only)")) -> Response:
    asked = await read_sketch_request(request)
    sketch = await run_in_threadpool(CanonicalSketch.of, asked.sketch, models.resolution)
    pictures = await service.run(models.pictures, sketch, service.settings.refine_steps if asked.refine else 0)
    if format == "dicom":
        return Response(await run_in_threadpool(secondary_capture, pictures[-1], models.version), media_type=DICOM)
    if steps:
        urls = [f"data:image/png;base64,{base64.b64encode(encode_png(picture)).decode()}" for picture in pictures]
        return JSONResponse({"steps": urls})
    return Response(encode_png(pictures[-1]), media_type="image/png")
