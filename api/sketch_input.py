"""A request's sketch: an uploaded PNG/JPEG (multipart field `sketch`) or JSON strokes, checked before any model.

The upload's type is decided by its bytes, not by what the client claims; its size was already
bounded while the body streamed in (`api.limits`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from fastapi import HTTPException, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.schemas import FiltersIn, SearchIn
from formats.strokes import Stroke, rasterise

SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
FORM_LISTS = {"diagnosis": "diagnosis", "finding": "findings", "exclude_patient": "exclude_patients"}


@dataclass(frozen=True)
class SketchRequest:
    sketch: bytes | np.ndarray  # PNG/JPEG bytes, or the strokes rasterised
    k: int
    filters: FiltersIn
    refine: bool
    signs: dict[str, float] = field(default_factory=dict)  # sign -> strength, checked against the bundle later
    preview: bool = False  # the pad's live preview (logged as kind "preview")


def _picture_type(data: bytes) -> str | None:
    return next((kind for signature, kind in SIGNATURES.items() if data.startswith(signature)), None)


def _invalid(error: ValidationError) -> HTTPException:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return HTTPException(422, f"{where}: {first.get('msg')}" if where else str(first.get("msg")))


async def read_sketch_request(request: Request) -> SketchRequest:
    """The sketch and the search fields of a multipart or JSON body; 415 for any other body or picture type."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = SearchIn.model_validate_json(await request.body())
        except ValidationError as error:
            raise _invalid(error) from None
        strokes = [Stroke(tuple(s.points), s.width, None if s.pressure is None else tuple(s.pressure)) for s in body.strokes]
        return SketchRequest(rasterise(strokes), body.k, body.filters, body.refine, body.signs, body.preview)
    if kind != "multipart/form-data":
        raise HTTPException(415, "send the sketch as multipart/form-data (field `sketch`, PNG or JPEG) or as JSON strokes")
    form = await request.form()
    upload = form.get("sketch")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, "the multipart field `sketch` (a PNG or JPEG file) is missing")
    data = await upload.read()
    if _picture_type(data) is None:
        raise HTTPException(415, "the sketch must be a PNG or JPEG picture")
    fields: dict[str, object] = {name: form.getlist(field) for field, name in FORM_LISTS.items() if form.getlist(field)}
    for name in ("date_from", "date_to"):
        if form.get(name):
            fields[name] = form.get(name)
    try:
        filters = FiltersIn.model_validate(fields)
        search = SearchIn.model_validate({"strokes": [], **{name: form[name] for name in ("k", "refine", "preview") if form.get(name)},
                                          "signs": _form_signs(form.get("signs"))})
    except ValidationError as error:
        raise _invalid(error) from None
    return SketchRequest(data, search.k, filters, search.refine, search.signs, search.preview)


def _form_signs(text: object) -> object:
    """The multipart field `signs`: JSON text of an object {sign: strength}; absent or empty means none."""
    if not text:
        return {}
    try:
        return json.loads(str(text))
    except json.JSONDecodeError:
        raise HTTPException(422, 'signs: the field is JSON text of an object, e.g. {"exudate": 1}') from None
