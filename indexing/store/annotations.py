"""Annotations (instance masks, expert or model) and synthesized sketches of an image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from indexing.models import ANNOTATION_ORIGINS, Annotation, Sketch, utc_now


@dataclass(frozen=True)
class NewAnnotation:
    """One instance mask (COCO RLE {"size": [H, W], "counts": str}) of an image."""

    category_id: int
    instance_id: int
    mask_rle: dict[str, Any]
    origin: str = "expert"
    model_version: str = ""
    score: float | None = None


def _annotation(new: NewAnnotation) -> Annotation:
    if new.origin not in ANNOTATION_ORIGINS:
        raise ValueError(f"annotation origin must be one of {ANNOTATION_ORIGINS}, got {new.origin!r}")
    if new.origin == "model" and not new.model_version:
        raise ValueError("a model annotation needs the model version that produced it")
    return Annotation(**new.__dict__)


def add_annotation(session: Session, image_id: int, annotation: NewAnnotation) -> Annotation:
    row = _annotation(annotation)
    row.image_id = image_id
    session.add(row)
    session.flush()
    return row


def list_annotations(session: Session, image_id: int, origin: str | None = None) -> list[Annotation]:
    query = select(Annotation).where(Annotation.image_id == image_id).order_by(Annotation.instance_id)
    if origin is not None:
        query = query.where(Annotation.origin == origin)
    return list(session.scalars(query))


def put_sketch(session: Session, image_id: int, model_version: str, png: bytes) -> Sketch:
    """Insert or replace the sketch of an image for a synthesizer version."""
    sketch = session.scalars(
        select(Sketch).where(Sketch.image_id == image_id, Sketch.model_version == model_version)
    ).one_or_none()
    if sketch is None:
        sketch = Sketch(image_id=image_id, model_version=model_version, png=png)
        session.add(sketch)
    else:
        sketch.png = png
        sketch.created_at = utc_now()
    session.flush()
    return sketch


def get_sketch(session: Session, image_id: int, model_version: str) -> bytes | None:
    return session.scalars(
        select(Sketch.png).where(Sketch.image_id == image_id, Sketch.model_version == model_version)
    ).one_or_none()
