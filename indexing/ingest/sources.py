"""What an ingest reads: items found in a folder, a phantom dataset, DICOM files or a DICOMweb server.

Items are lazy: discovering 10k files reads no pixels; `load()` reads one and raises `SkipFile`
with the reason when it cannot be used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from formats.errors import InputError
from formats.images import IMAGE_SUFFIXES
from formats.uids import is_dicom_uid
from indexing.ingest.decode import (
    PHOTO_SOP_CLASSES, DicomFacts, SkipFile, dicom_facts, dicom_pixels, quiet_pydicom, read_dicom_file, read_photo,
)

DICOM_SUFFIXES = (".dcm", ".dicom")
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
PHANTOM_METADATA = "metadata.csv"
PHANTOM_ANNOTATIONS = "annotations.json"
PHANTOM_IMAGES = "images"
QIDO_PAGE_SIZE = 100

# DICOM JSON tags (PS3.18 F.2) of a QIDO-RS instance result.
TAG_SOP_CLASS = "00080016"
TAG_SOP_INSTANCE = "00080018"
TAG_SERIES = "0020000E"
TAG_STUDY = "0020000D"


@dataclass(frozen=True)
class Candidate:
    pixels: np.ndarray  # [H, W, 3] uint8
    dicom: DicomFacts | None = None


@dataclass(frozen=True)
class IngestItem:
    name: str  # shown in reports: path relative to the ingest root, or the SOP UID
    key: str  # matches metadata rows and annotations (file stem or SOP UID)
    source: str  # folder | phantom | dicom | dicomweb
    load: Callable[[], Candidate]
    sop_uid: str | None = None  # known before loading (DICOMweb), so re-ingest skips the retrieval


@dataclass(frozen=True)
class Discovered:
    items: list[IngestItem]
    metadata_csv: Path | None
    annotations_json: Path | None


def _load_photo(path: Path, max_pixels: int, max_file_bytes: int) -> Candidate:
    return Candidate(pixels=read_photo(path, max_pixels, max_file_bytes))


def _load_dicom(path: Path, max_pixels: int, max_file_bytes: int) -> Candidate:
    pixels, facts = read_dicom_file(path, max_pixels, max_file_bytes)
    return Candidate(pixels=pixels, dicom=facts)


def _refuse(reason: str) -> Candidate:
    raise SkipFile(reason)


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    with path.open("rb") as handle:
        handle.seek(DICOM_MAGIC_OFFSET)
        return handle.read(len(DICOM_MAGIC)) == DICOM_MAGIC


def _item_for(path: Path, root: Path, photo_source: str, max_pixels: int, max_file_bytes: int) -> IngestItem:
    name = path.relative_to(root).as_posix() if path != root else path.name
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return IngestItem(name, path.stem, photo_source, partial(_load_photo, path, max_pixels, max_file_bytes))
    if _looks_like_dicom(path):
        return IngestItem(name, path.stem, "dicom", partial(_load_dicom, path, max_pixels, max_file_bytes))
    reason = f"unsupported file type {path.suffix or '(no suffix, no DICOM preamble)'}"
    return IngestItem(name, path.stem, "folder", partial(_refuse, reason))


def is_phantom_dataset(path: Path) -> bool:
    return (path / PHANTOM_IMAGES).is_dir() and (path / PHANTOM_METADATA).is_file()


LINK_OUTSIDE = "a symbolic link to outside the ingested folder: not followed"


def _entries(folder: Path, root: Path, recursive: bool) -> list[Path]:
    """Files under `folder` (hidden ones left out), plus every symbolic link that leads outside
    `root`, so the caller can report it. A link to a folder inside `root` adds nothing (its files
    are found by their real path); folder links are never descended into."""
    real_root = root.resolve()
    found = []
    for entry in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        if any(part.startswith(".") for part in entry.relative_to(folder).parts):
            continue
        if entry.is_symlink() and not entry.resolve().is_relative_to(real_root):
            found.append(entry)
        elif entry.is_file():
            found.append(entry)
    return found


def _item_or_link(
    path: Path, root: Path, boundary: Path, photo_source: str, max_pixels: int, max_file_bytes: int
) -> IngestItem:
    if path.is_symlink() and not path.resolve().is_relative_to(boundary.resolve()):
        return IngestItem(path.relative_to(root).as_posix(), path.stem, photo_source, partial(_refuse, LINK_OUTSIDE))
    return _item_for(path, root, photo_source, max_pixels, max_file_bytes)


class NothingToIngestError(InputError):
    """The path given holds no file at all: almost always the wrong folder, so a usage error (exit 2)."""


def discover(path: Path, max_pixels: int, max_file_bytes: int, exclude: tuple[Path, ...] = ()) -> Discovered:
    """Items under `path`: one file, a phantom dataset folder (images/, metadata.csv, annotations.json),
    or any folder (searched recursively; hidden files and the `exclude` side files left out, links
    that lead outside the folder reported as skipped)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"nothing to ingest at {path}")
    if path.is_file():
        return Discovered([_item_for(path, path, "folder", max_pixels, max_file_bytes)], None, None)
    if is_phantom_dataset(path):
        images = path / PHANTOM_IMAGES
        annotations = path / PHANTOM_ANNOTATIONS
        found = Discovered(
            [_item_or_link(p, images, path, "phantom", max_pixels, max_file_bytes) for p in _entries(images, path, recursive=False)],
            path / PHANTOM_METADATA,
            annotations if annotations.is_file() else None,
        )
    else:
        skip = {p.resolve() for p in exclude}
        files = [p for p in _entries(path, path, recursive=True) if p.resolve() not in skip]
        found = Discovered([_item_or_link(p, path, path, "folder", max_pixels, max_file_bytes) for p in files], None, None)
    if not found.items:
        raise NothingToIngestError(f"{path} holds no files to ingest (hidden files and the side files are left out)")
    return found


def _first_value(dataset: dict, tag: str) -> str | None:
    values = dataset.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


def _retrieve(client, study: str, series: str, sop: str, max_pixels: int) -> Candidate:  # type: ignore[no-untyped-def]
    with quiet_pydicom():
        try:
            dataset = client.retrieve_instance(study_instance_uid=study, series_instance_uid=series, sop_instance_uid=sop)
        except Exception as error:  # HTTP and multipart errors from the archive
            raise SkipFile(f"retrieve failed: {type(error).__name__}") from error
        return Candidate(pixels=dicom_pixels(dataset, max_pixels), dicom=dicom_facts(dataset))


def dicomweb_items(client, max_pixels: int, page_size: int = QIDO_PAGE_SIZE) -> list[IngestItem]:  # type: ignore[no-untyped-def]
    """Walk QIDO-RS studies (paged) and their instances; each item retrieves one instance by WADO-RS.

    `client` is a dicomweb_client DICOMwebClient (or anything with the same search/retrieve calls).
    """
    items: list[IngestItem] = []
    offset = 0
    while True:
        studies = client.search_for_studies(offset=offset, limit=page_size)
        for study in studies:
            study_uid = _first_value(study, TAG_STUDY)
            if study_uid is None:
                continue
            for instance in client.search_for_instances(study_instance_uid=study_uid):
                sop = _first_value(instance, TAG_SOP_INSTANCE)
                series = _first_value(instance, TAG_SERIES)
                sop_class = _first_value(instance, TAG_SOP_CLASS)
                if sop is None or series is None:
                    continue
                if not all(is_dicom_uid(uid) for uid in (study_uid, series, sop)):  # never shown: it may be a name
                    name = f"instance {len(items) + 1} of the listing"
                    items.append(IngestItem(name, name, "dicomweb", partial(_refuse, "its UIDs are not DICOM UIDs")))
                    continue
                if sop_class is not None and sop_class not in PHOTO_SOP_CLASSES:
                    load = partial(_refuse, f"unsupported SOP class {sop_class}")
                else:
                    load = partial(_retrieve, client, study_uid, series, sop, max_pixels)
                items.append(IngestItem(sop, sop, "dicomweb", load, sop_uid=sop))
        if len(studies) < page_size:
            return items
        offset += page_size
