"""Export the archive's live images as a dataset folder (DESIGN.md format) for the training commands.

```
OUT/images/<image id>.png   symlink to the stored file (a copy where symlinks are not possible)
OUT/masks/<image id>.png    uint8 instance-id map rebuilt from the expert RLE masks (annotated images)
OUT/annotations.json        COCO with `instance_id`, annotated images only (the synthesizer's input)
OUT/metadata.csv            file, image_id, pseudonymous refs, dates, diagnosis, findings, labels, UIDs
```
Everything is written into a temporary sibling folder that is renamed to OUT at the end, so a
crash never leaves a half-written dataset. Only pseudonyms leave the store: it holds no names.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PilImage
from sqlalchemy import exists, select
from sqlalchemy.orm import Session, selectinload

from formats.errors import InputError
from formats.masks import Instance, coco_document, decode_rle, image_entry, instance_annotations
from indexing.archive import Archive
from indexing.ingest.metadata import FINDING_SEPARATORS, is_identifying
from indexing.models import Annotation, Image

EXPORTED_ORIGIN = "expert"  # model predictions are not ground truth for training
FIXED_COLUMNS = (
    "file", "image_id", "case_ref", "patient_ref", "study_date", "acquired_at", "diagnosis", "findings",
    "study_uid", "series_uid", "sop_uid",
)
FINDINGS_JOINER = f"{FINDING_SEPARATORS[0]} "  # as the phantom tool writes them; ingest splits on it
LABEL_COLUMN_PREFIX = "label_"  # for a label whose key collides with a fixed column
MIN_ID_DIGITS = 6  # as the phantom tool's file names
MAX_INSTANCE_ID = int(np.iinfo(np.uint8).max)  # the mask PNG is uint8
EXPORT_PAGE_SIZE = 200  # images loaded (with their annotations) per query
COCO_DESCRIPTION = "Sketch2MedI archive export"


class ExportError(InputError):
    """An export that cannot start (bad OUT, nothing to export); nothing has been written."""


@dataclass(frozen=True)
class ExportReport:
    out: Path
    images: int
    annotated: int
    copied: int  # files copied because a symlink could not be made


def _check_out(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportError(f"{out} exists and is not a folder; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty; give a new or empty folder (nothing was written)")
    if not out.parent.is_dir():
        raise ExportError(f"the parent folder of {out} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write into {out.parent}")


def _selected_ids(session: Session, annotated_only: bool, limit: int | None) -> list[int]:
    """Live image ids in id order, optionally only those with expert annotations, at most `limit`."""
    query = select(Image.id).where(Image.deleted_at.is_(None)).order_by(Image.id).limit(limit)
    if annotated_only:
        query = query.where(
            exists().where(Annotation.image_id == Image.id, Annotation.origin == EXPORTED_ORIGIN)
        )
    return list(session.scalars(query))


def _pages(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), EXPORT_PAGE_SIZE):
        yield ids[start : start + EXPORT_PAGE_SIZE]


def _link_or_copy(source: Path, target: Path) -> bool:
    """Symlink `target` to `source` (absolute); copy instead where symlinks fail. Returns True on a copy."""
    if not source.is_file():
        raise FileNotFoundError(f"the stored file of an archive image is missing: {source} (run `s2m archive check`)")
    try:
        target.symlink_to(source)
        return False
    except OSError:
        shutil.copyfile(source, target)
        return True


def _instance_map(image: Image, annotations: Sequence[Annotation]) -> tuple[np.ndarray, tuple[Instance, ...]]:
    """uint8 [H, W] instance-id map and its instances; ids are the store's unless they do not fit uint8.

    If any stored instance id is outside 1..255 the instances are renumbered 1..N in instance id
    order; the COCO written from this map then carries the new ids, so both files agree. Where
    masks overlap, the later instance wins and an instance left with no pixel is dropped.
    """
    ordered = sorted(annotations, key=lambda a: a.instance_id)
    if len(ordered) > MAX_INSTANCE_ID:
        raise ValueError(f"image {image.id} has {len(ordered)} instances; a uint8 mask holds at most {MAX_INSTANCE_ID}")
    keep_ids = all(1 <= a.instance_id <= MAX_INSTANCE_ID for a in ordered)
    instance_map = np.zeros((image.height, image.width), dtype=np.uint8)  # [H, W]
    instances = []
    for number, annotation in enumerate(ordered, start=1):
        rle = annotation.mask_rle
        if list(rle["size"]) != [image.height, image.width]:
            raise ValueError(f"annotation {annotation.id} of image {image.id}: mask size {rle['size']} differs from the image")
        binary = decode_rle(rle)  # [H, W]
        instance_id = annotation.instance_id if keep_ids else number
        instance_map[binary] = instance_id
        instances.append(Instance(instance_id=instance_id, category_id=annotation.category_id))
    present = set(np.unique(instance_map).tolist())
    return instance_map, tuple(i for i in instances if i.instance_id in present)


def _metadata_row(image: Image, file_name: str) -> dict[str, Any]:
    labels = {
        (LABEL_COLUMN_PREFIX + key if key in FIXED_COLUMNS else key): value
        for key, value in (image.labels or {}).items()
        if not is_identifying(key)
    }
    return {
        "file": file_name,
        "image_id": image.id,
        "case_ref": image.case_ref or "",
        "patient_ref": image.patient_ref or "",
        "study_date": image.acquired_at.date().isoformat() if image.acquired_at else "",
        "acquired_at": image.acquired_at.isoformat() if image.acquired_at else "",
        "diagnosis": image.diagnosis or "",
        "findings": FINDINGS_JOINER.join(image.findings or []),
        "study_uid": image.study_uid or "",
        "series_uid": image.series_uid or "",
        "sop_uid": image.sop_uid or "",
        **labels,
    }


def _write_metadata(path: Path, rows: list[dict[str, Any]]) -> None:
    label_columns = sorted({key for row in rows for key in row} - set(FIXED_COLUMNS))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*FIXED_COLUMNS, *label_columns], restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _write_dataset(archive: Archive, ids: list[int], folder: Path) -> ExportReport:
    digits = max(MIN_ID_DIGITS, len(str(ids[-1])))  # one width per export keeps name order = id order
    (folder / "images").mkdir()
    rows: list[dict[str, Any]] = []
    coco_images: list[dict[str, Any]] = []
    coco_annotations: list[dict[str, Any]] = []
    copied = 0
    with archive.sessions() as session:
        for page in _pages(ids):
            query = select(Image).where(Image.id.in_(page)).order_by(Image.id).options(selectinload(Image.annotations))
            for image in session.scalars(query):
                file_name = f"{image.id:0{digits}d}.png"
                copied += _link_or_copy(archive.files.absolute(image.stored_path).resolve(), folder / "images" / file_name)
                rows.append(_metadata_row(image, file_name))
                expert = [a for a in image.annotations if a.origin == EXPORTED_ORIGIN]
                if not expert:
                    continue
                instance_map, instances = _instance_map(image, expert)
                (folder / "masks").mkdir(exist_ok=True)
                PilImage.fromarray(instance_map).save(folder / "masks" / file_name)
                # image_entry writes a square image; archive photographs need not be
                coco_images.append({**image_entry(image.id, file_name, image.width), "height": image.height})
                coco_annotations += instance_annotations(instance_map, instances, image.id)
    for number, annotation in enumerate(coco_annotations, start=1):
        annotation["id"] = number  # unique however many instances an image has
    _write_metadata(folder / "metadata.csv", rows)
    if coco_images:
        document = coco_document(coco_images, coco_annotations, description=COCO_DESCRIPTION)
        (folder / "annotations.json").write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
    return ExportReport(out=folder, images=len(rows), annotated=len(coco_images), copied=copied)


def export_dataset(archive: Archive, out: Path, annotated_only: bool = False, limit: int | None = None) -> ExportReport:
    """Write the live images (by id; only annotated ones if asked; at most `limit`) as a dataset folder.

    Raises ExportError, writing nothing, if OUT is a non-empty folder or there is nothing to export.
    """
    out = Path(out).expanduser().absolute()
    if limit is not None and limit < 1:
        raise ExportError(f"limit must be at least 1, got {limit}")
    _check_out(out)
    with archive.sessions() as session:
        ids = _selected_ids(session, annotated_only, limit)
    if not ids:
        kind = "annotated live images" if annotated_only else "live images"
        raise ExportError(f"the archive has no {kind} to export")
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        report = _write_dataset(archive, ids, staging)
        os.replace(staging, out)  # replaces an empty OUT folder in one step
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return replace(report, out=out)
