"""Write phantom dataset folders (DESIGN.md, shared formats); `phantoms.reader` reads them.

```
DIR/images/000123.png   RGB photograph
DIR/masks/000123.png    uint8 instance-id map (0 = background)
DIR/annotations.json    COCO, RLE segmentation + `instance_id` = pixel value in the mask
DIR/metadata.csv        file, case_id, patient_id, study_date, diagnosis, findings, tonsil_grade, UIDs
DIR/dicom/000123.dcm    with dicom=True: VL Photographic Image
```
Each case is a pure function of (seed, index, size), so the folder is identical whatever the
number of workers; a later call with `start` adds cases and merges them into the two index files.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from formats.masks import coco_document, image_entry, instance_annotations
from phantoms.metadata import MetadataConfig, file_stem
from phantoms.reader import read_metadata
from phantoms.render import check_size, render_case

METADATA_COLUMNS = (
    "file", "case_id", "patient_id", "patient_sex", "patient_age", "study_date", "diagnosis", "findings",
    "tonsil_grade", "study_uid", "series_uid", "sop_uid",
)
PNG_COMPRESSION = 1  # fast; with the RLE strategy it is also smaller than level 3 on these noisy images
CHUNK_SIZE = 8


@dataclass(frozen=True)
class CaseJob:
    """What a worker needs to write one case."""

    out: Path
    seed: int
    index: int
    size: int
    dicom: bool


@dataclass(frozen=True)
class CaseRecord:
    """What a worker sends back for the two index files."""

    index: int
    metadata: dict[str, str]
    image: dict[str, Any]
    annotations: list[dict[str, Any]]


def check_arguments(out: Path, count: int, size: int, seed: int, workers: int, start: int) -> None:
    """Raise ValueError (bad numbers) or OSError (bad folder) before anything is written."""
    limits = MetadataConfig()
    for name, value in (("count", count), ("seed", seed), ("workers", workers), ("start", start)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if start < 0:
        raise ValueError(f"start must be 0 or more, got {start}")
    if start + count - 1 > limits.max_index:
        raise ValueError(f"start + count must not exceed {limits.max_index + 1} (six-digit case numbers)")
    if not 0 <= seed <= limits.max_seed:
        raise ValueError(f"seed must be between 0 and {limits.max_seed}, got {seed}")
    check_size(size)
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot create the dataset folder {out}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write the dataset folder {out}: {existing} is not writable")
    annotations = out / "annotations.json"
    if annotations.is_file():
        sizes = {image["width"] for image in json.loads(annotations.read_text())["images"]}
        if sizes - {size}:
            raise ValueError(f"{out} already holds {sorted(sizes)} px images; write {size} px cases to another folder")


def _write_png(path: Path, array: np.ndarray) -> None:
    """RGB [H, W, 3] or grey [H, W] uint8 to PNG."""
    pixels = array[..., ::-1] if array.ndim == 3 else array  # OpenCV writes BGR
    options = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if not cv2.imwrite(str(path), np.ascontiguousarray(pixels), options):
        raise OSError(f"could not write {path}")


def _write_case(job: CaseJob) -> CaseRecord:
    case = render_case(job.seed, job.index, job.size)
    stem = file_stem(job.index)
    file_name = f"{stem}.png"
    _write_png(job.out / "images" / file_name, case.image)
    _write_png(job.out / "masks" / file_name, case.instance_mask)
    if job.dicom:
        from phantoms.dicom import write_dicom

        write_dicom(job.out / "dicom" / f"{stem}.dcm", case.image, case.metadata)
    image_id = job.index + 1
    return CaseRecord(
        index=job.index,
        metadata={"file": file_name, **case.metadata},
        image=image_entry(image_id, file_name, job.size),
        annotations=instance_annotations(case.instance_mask, case.instances, image_id),
    )


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which ends the pool: no trace per worker


def _atomic_write_text(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False, newline="") as handle:
        handle.write(text)
        temporary = Path(handle.name)
    temporary.replace(path)


def _merge_index_files(out: Path, records: list[CaseRecord], seed: int) -> None:
    """Write metadata.csv and annotations.json, keeping earlier cases other than the new ones."""
    new_files = {r.metadata["file"] for r in records}
    rows = [row for row in read_metadata(out) if row["file"] not in new_files] if (out / "metadata.csv").exists() else []
    rows += [r.metadata for r in records]
    rows.sort(key=lambda row: row["file"])
    images = [r.image for r in records]
    annotations = [a for r in records for a in r.annotations]
    annotation_path = out / "annotations.json"
    if annotation_path.exists():
        old = json.loads(annotation_path.read_text())
        kept_ids = {img["id"] for img in old["images"] if img["file_name"] not in new_files}
        images += [img for img in old["images"] if img["id"] in kept_ids]
        annotations += [a for a in old["annotations"] if a["image_id"] in kept_ids]
    images.sort(key=lambda img: img["id"])
    annotations.sort(key=lambda a: a["id"])

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METADATA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write_text(out / "metadata.csv", buffer.getvalue())
    document = coco_document(images, annotations, description=f"Sketch2MedI phantom pharynx archive, seed {seed}")
    _atomic_write_text(annotation_path, json.dumps(document, separators=(",", ":")))


def generate_dataset(
    out: Path,
    count: int,
    size: int,
    seed: int,
    workers: int = 1,
    dicom: bool = False,
    start: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Render cases start .. start+count-1 of archive `seed` into `out`; returns `out`.

    `on_progress(n)` is called after each finished case with the number done so far.
    """
    out = Path(out)
    check_arguments(out, count, size, seed, workers, start)
    for sub in ("images", "masks") + (("dicom",) if dicom else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [CaseJob(out, seed, index, size, dicom) for index in range(start, start + count)]
    records: list[CaseRecord] = []
    if workers == 1:
        results = map(_write_case, jobs)
        for record in results:
            records.append(record)
            if on_progress:
                on_progress(len(records))
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, count), initializer=_init_worker) as pool:
            for record in pool.imap(_write_case, jobs, chunksize=CHUNK_SIZE):
                records.append(record)
                if on_progress:
                    on_progress(len(records))
    _merge_index_files(out, records, seed)
    return out
