"""`POST /v1/generate`: a sketch's generated image, for talking a patient through a condition.

It touches no archive data (no index, no rows: it answers before any index build), yet needs a key
since it costs compute. It runs the process's query models (E, G, H), not the search engine. PNG of
x_T by default; `steps=true` gives every picture x_0 .. x_T as PNG data URLs; `format=dicom` a
Secondary Capture labelled synthetic (`api.dicom`). Signs (field `signs`) are applied in W before G and H
draw; the header `X-Signs-Applied` (and the `signs` key of the JSON answer) says which and how far.
`GET /v1/signs` lists the signs a query may ask for, with their ranges (what the pad's sliders show)."""

from __future__ import annotations

import base64
import json
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import PipelineDep, SearchKey, ServiceDep
from api.dicom import secondary_capture
from api.schemas import SignControlOut, SignsOut
from api.routes.search import SKETCH_BODY
from api.sketch_input import read_sketch_request
from formats.sketch import CanonicalSketch
from generation.signs import CHOSEN
from indexing.vectors import encode_png

router = APIRouter(prefix="/v1", tags=["generate"])
DICOM = "application/dicom"


@router.post("/generate", response_class=Response, openapi_extra=SKETCH_BODY,
             responses={200: {"content": {"image/png": {}, DICOM: {}, "application/json": {}}}})
async def generate(request: Request, service: ServiceDep, models: PipelineDep, key: SearchKey,
                   format: Literal["png", "dicom"] = Query("png"),  # noqa: A002 (the query parameter's name)
                   steps: bool = Query(False, description="every picture x_0 .. x_T (PNG only)")) -> Response:
    asked = await read_sketch_request(request)
    strengths = models.sign_strengths(asked.signs)  # unknown signs or strengths: 422 listing the known signs
    sketch = await run_in_threadpool(CanonicalSketch.of, asked.sketch, models.resolution)
    pictures = await service.run(models.pictures, sketch, service.settings.refine_steps if asked.refine else 0, strengths)
    applied = [one.as_record() for one in models.signs.applied(strengths, ("w",))] if strengths else []
    headers = {"X-Signs-Applied": json.dumps(applied)}
    if format == "dicom":
        picture = await run_in_threadpool(secondary_capture, pictures[-1], models.version)
        return Response(picture, media_type=DICOM, headers=headers)
    if steps:
        urls = [f"data:image/png;base64,{base64.b64encode(encode_png(picture)).decode()}" for picture in pictures]
        return JSONResponse({"steps": urls, "signs": applied}, headers=headers)
    return Response(encode_png(pictures[-1]), media_type="image/png", headers=headers)


@router.get("/signs", response_model=SignsOut)
async def signs(models: PipelineDep, key: SearchKey) -> SignsOut:
    """The clinical signs this bundle can apply (none when it has no sign directions)."""
    directions = models.signs
    if directions is None:
        return SignsOut(signs=[], routes=[], chosen_on_validation=False, current=False)
    defaults, absent = directions.defaults, directions.absent_defaults
    return SignsOut(signs=[SignControlOut(name=name, min=directions.min_strength, max=directions.max_strength, present=defaults[name],
                                          absent=absent[name]) for name in directions.names],
                    routes=list(directions.routes), chosen_on_validation=CHOSEN in directions.record, current=directions.current)
