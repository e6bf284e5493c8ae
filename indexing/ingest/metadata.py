"""Side files of an ingest: the metadata CSV, COCO instance annotations, and patient pseudonyms.

Rows and annotations are matched to images by file stem (`images/0007.png`, `dicom/0007.dcm` and
COCO `file_name` `0007.png` all key `0007`) or, for DICOM, by SOP Instance UID.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from formats.errors import InputError

# Columns with a fixed meaning; every other column becomes a label, unless it looks identifying.
KNOWN_COLUMNS = (
    "file", "case_id", "patient_id", "study_date", "acquired_at", "diagnosis", "findings",
    "study_uid", "series_uid", "sop_uid",
)
IDENTIFYING_WORDS = ("name", "birth", "dob", "address", "phone", "email", "mrn", "ssn")
FINDING_SEPARATORS = (";", "|")


class MetadataError(InputError):
    """A metadata or annotation file that cannot be used at all (ingest stops before writing)."""


@dataclass(frozen=True)
class CaseMetadata:
    case_ref: str | None = None
    patient_id: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    acquired_at: datetime | None = None
    diagnosis: str | None = None
    findings: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CocoInstance:
    category_id: int
    instance_id: int
    mask_rle: dict[str, Any]  # {"size": [H, W], "counts": str}


def pseudonymize(key: bytes, patient_id: str, hex_chars: int) -> str:
    """Keyed pseudonym HMAC-SHA256(key, id): stable per key, not reversible without it."""
    return hmac.new(key, patient_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()[:hex_chars]


def _parse_date(text: str) -> datetime:
    for layout in ("%Y-%m-%d", "%Y%m%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise MetadataError(f"unreadable date {text!r} (expected YYYY-MM-DD or YYYYMMDD)") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _parse_findings(text: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise MetadataError(f"findings {text!r} is neither a JSON list nor a ;-separated list") from error
        return [str(value) for value in values]
    for separator in FINDING_SEPARATORS:
        if separator in text:
            return [part.strip() for part in text.split(separator) if part.strip()]
    return [text]


def _label_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _cell(row: dict[str, str | None], column: str) -> str | None:
    text = (row.get(column) or "").strip()
    return text or None


def is_identifying(column: str) -> bool:
    lowered = column.lower()
    return any(word in lowered for word in IDENTIFYING_WORDS)


def read_metadata_csv(path: Path) -> dict[str, CaseMetadata]:
    """Rows keyed by file stem and by SOP UID. Identifying columns (names, birth dates...) are dropped."""
    if not path.is_file():
        raise MetadataError(f"no metadata CSV at {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "file" not in columns:
            raise MetadataError(f"{path.name} needs a 'file' column naming each image; it has {columns}")
        label_columns = [c for c in columns if c not in KNOWN_COLUMNS and not is_identifying(c)]
        by_key: dict[str, CaseMetadata] = {}
        for line, row in enumerate(reader, start=2):
            value = partial(_cell, row)
            try:
                date = value("acquired_at") or value("study_date")
                case = CaseMetadata(
                    case_ref=value("case_id"),
                    patient_id=value("patient_id"),
                    study_uid=value("study_uid"),
                    series_uid=value("series_uid"),
                    sop_uid=value("sop_uid"),
                    acquired_at=_parse_date(date) if date else None,
                    diagnosis=value("diagnosis"),
                    findings=_parse_findings(row.get("findings") or ""),
                    labels={c: _label_value(v) for c in label_columns if (v := value(c)) is not None},
                )
            except MetadataError as error:
                raise MetadataError(f"{path.name} line {line}: {error}") from error
            file_value = value("file")
            if file_value is None:
                raise MetadataError(f"{path.name} line {line}: empty 'file'")
            by_key[Path(file_value).stem] = case
            if case.sop_uid:
                by_key[case.sop_uid] = case
    return by_key


def read_coco_annotations(path: Path) -> dict[str, list[CocoInstance]]:
    """COCO instances with RLE masks, keyed by the stem of their image's `file_name`."""
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
        files = {entry["id"]: Path(entry["file_name"]).stem for entry in coco["images"]}
        sizes = {entry["id"]: [int(entry["height"]), int(entry["width"])] for entry in coco["images"]}
        by_stem: dict[str, list[CocoInstance]] = {}
        for entry in coco["annotations"]:
            rle = entry["segmentation"]
            if not isinstance(rle, dict) or "counts" not in rle:
                raise MetadataError(f"annotation {entry.get('id')} has no RLE segmentation")
            if list(rle["size"]) != sizes[entry["image_id"]]:
                raise MetadataError(f"annotation {entry.get('id')}: mask size {rle['size']} differs from its image")
            counts = rle["counts"]
            by_stem.setdefault(files[entry["image_id"]], []).append(
                CocoInstance(
                    category_id=int(entry["category_id"]),
                    instance_id=int(entry.get("instance_id", entry["id"])),
                    mask_rle={
                        "size": [int(s) for s in rle["size"]],
                        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
                    },
                )
            )
    except FileNotFoundError as error:
        raise MetadataError(f"no annotations file at {path}") from error
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise MetadataError(f"{path.name} is not COCO JSON with images and annotations ({error!r})") from error
    return by_stem
