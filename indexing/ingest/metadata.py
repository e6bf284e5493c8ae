"""Side files of an ingest: the metadata CSV, COCO instance annotations, and patient pseudonyms.

A CSV row names its image by the path relative to the ingested folder (`indexing.ingest.matching`
joins rows to files, and refuses a name that could mean two files); annotations are matched by
file stem (COCO `file_name` `0007.png` keys `0007`). Each row is checked on its own: a row with
more or fewer cells than the header, a date that is not one, a UID that is not a DICOM UID or a
numeric label that is not a plain number is refused by its line, never by its values. Labels keep
their text (`007` stays `007`); only the numeric label columns hold numbers.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

from formats.categories import CATEGORY_NAMES
from formats.errors import InputError
from formats.masks import rle_run_lengths
from formats.uids import is_dicom_uid
from indexing.cases import CaseRecord

# Columns with a fixed meaning, and the label columns kept by default: an allow-list, so a column
# the archive does not know (`born`, `nhs_number`, `tel`, ...) never reaches the database. More
# label columns are kept only when named explicitly (`s2m archive ingest --keep-column NAME`).
KNOWN_COLUMNS = (
    "file", "case_id", "patient_id", "study_date", "acquired_at", "diagnosis", "findings",
    "study_uid", "series_uid", "sop_uid",
)
LABEL_COLUMNS = ("tonsil_grade", "patient_sex", "patient_age")
NUMERIC_LABELS = ("tonsil_grade", "patient_age")  # the only label columns whose values become numbers
UID_COLUMNS = ("study_uid", "series_uid", "sop_uid")
NON_FINITE = ("nan", "inf", "infinity")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
IDENTIFYING_WORDS = ("name", "birth", "dob", "address", "phone", "email", "mrn", "ssn")
FINDING_SEPARATORS = (";", "|")


class MetadataError(InputError):
    """A metadata or annotation file that cannot be used at all (ingest stops before writing)."""


@dataclass(frozen=True)
class CaseMetadata:
    """A metadata CSV row: the case's record (no pseudonym yet), the patient identifier it is made from, labels."""

    case: CaseRecord = CaseRecord()
    patient_id: str | None = None  # pseudonymised at ingest, never stored
    labels: dict[str, Any] = field(default_factory=dict)
    origin: str = ""  # "meta.csv line 7": how a problem with the row is reported (never its values)


@dataclass(frozen=True)
class MetadataRow:
    """One CSV row: the file it names (folders joined by "/"), and its case or why it cannot be used."""

    line: int
    file: str
    case: CaseMetadata | None
    problem: str | None = None  # the reason, without the line (`MetadataTable.where` gives that)


@dataclass(frozen=True)
class MetadataTable:
    """A metadata CSV: its rows in file order (joined to images by `indexing.ingest.matching`), rows
    that name no file at all (where, reason), and the columns left out (names only)."""

    name: str = ""
    rows: list[MetadataRow] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)

    def where(self, line: int) -> str:
        return f"{self.name} line {line}"


@dataclass(frozen=True)
class CocoAnnotations:
    """Instances by image key, and the images whose annotations were refused (key -> reason)."""

    instances: dict[str, list["CocoInstance"]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CocoInstance:
    category_id: int
    instance_id: int
    mask_rle: dict[str, Any]  # {"size": [H, W], "counts": str}


def pseudonymize(key: bytes, patient_id: str, hex_chars: int) -> str:
    """Keyed pseudonym HMAC-SHA256(key, id): stable per key, not reversible without it."""
    return hmac.new(key, patient_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()[:hex_chars]


class NotAPseudonymError(InputError):
    """A patient filter given something that is neither a pseudonym nor a patient ID (a name, a birth date)."""


# A patient ID as archives write them: letters, digits and . _ / -, no spaces (a name or a date has them).
RAW_PATIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")


def is_pseudonym(value: str, hex_chars: int) -> bool:
    return len(value) == hex_chars and not value.strip("0123456789abcdef")


def patient_filter_pseudonyms(values: Sequence[str], hex_chars: int, field_name: str,
                              key: Callable[[], bytes | None]) -> tuple[str, ...]:
    """Patient filter values as the pseudonyms the archive stores: a pseudonym is kept, a patient ID is
    pseudonymised with the archive's key (`key()`, asked only then), so it filters as meant and only its
    pseudonym is ever kept; anything else (a name, a birth date) is refused, never echoed."""
    refused = NotAPseudonymError(
        f"{field_name} takes patient pseudonyms ({hex_chars} lowercase hex characters, as results show them) or "
        "patient IDs (letters, digits and . _ / -), never a name or a date; the value was refused and not kept")
    chosen = []
    for value in values:
        if is_pseudonym(value, hex_chars):
            chosen.append(value)
        elif RAW_PATIENT_ID.fullmatch(value):
            secret = key()
            if secret is None:
                raise NotAPseudonymError(f"{field_name} got a patient ID but the archive has no pseudonym key yet, "
                                         "so no image can match it; the value was not kept")
            chosen.append(pseudonymize(secret, value, hex_chars))
        else:
            raise refused
    return tuple(chosen)


def _parse_date(text: str) -> datetime:
    for layout in ("%Y-%m-%d", "%Y%m%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise MetadataError("the date is not YYYY-MM-DD or YYYYMMDD") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _parse_findings(text: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise MetadataError("findings is neither a JSON list nor a ;-separated list") from error
        return [str(value) for value in values]
    for separator in FINDING_SEPARATORS:
        if separator in text:
            return [part.strip() for part in text.split(separator) if part.strip()]
    return [text]


def _label_value(column: str, text: str) -> Any:
    """A label as written; a numeric column's value as a number, refused unless plain decimals
    (`007`, `1_000` and `1e3` are not silently read as 7, 1000 and 1000.0)."""
    if column not in NUMERIC_LABELS:
        return text
    if text.lower().lstrip("+-") in NON_FINITE:
        raise MetadataError(f"label {column} is not a finite number")
    if not _PLAIN_NUMBER.fullmatch(text):
        raise MetadataError(f"label {column} is not a number in plain decimals (no leading zeros, separators or exponent)")
    return float(text) if "." in text else int(text)


def _uid(row: dict[str, str | None], column: str) -> str | None:
    value = _cell(row, column)
    if value is not None and not is_dicom_uid(value):
        raise MetadataError(f"{column} is not a DICOM UID (digits and dots, at most 64 characters)")
    return value


def _file_path(text: str) -> str:
    """A `file` cell as a relative path with "/" between folders ("./a\\x.png" -> "a/x.png")."""
    return "/".join(part for part in text.replace("\\", "/").split("/") if part not in ("", "."))


def _ragged(row: dict[Any, Any], columns: list[str]) -> str | None:
    extra = row.get(None) or []
    present = sum(1 for column in columns if row.get(column) is not None)
    if extra or present < len(columns):
        return f"has {present + len(extra)} cells, the header has {len(columns)}"
    return None


def _cell(row: dict[str, str | None], column: str) -> str | None:
    text = (row.get(column) or "").strip()
    return text or None


def is_identifying(column: str) -> bool:
    lowered = column.lower()
    return any(word in lowered for word in IDENTIFYING_WORDS)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str | None]]]]:
    """(columns, [(line, row)]) of a UTF-8 CSV; an encoding or CSV error is one sentence naming the line."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError:
        line = next(n for n, raw in enumerate(path.read_bytes().splitlines(), start=1) if not _utf8(raw))
        raise MetadataError(f"{path.name} is not UTF-8 text (line {line}): save it as UTF-8 and ingest again") from None
    except csv.Error as error:
        raise MetadataError(f"{path.name} is not a readable CSV ({error})") from None
    return columns, rows


def _case(row: dict[str, str | None], label_columns: list[str], columns: list[str]) -> CaseMetadata:
    """The case of one row; MetadataError (naming the field, never its value) when it cannot be used."""
    ragged = _ragged(row, columns)
    if ragged:
        raise MetadataError(ragged)
    value = partial(_cell, row)
    date = value("acquired_at") or value("study_date")
    return CaseMetadata(
        case=CaseRecord(
            case_ref=value("case_id"),
            study_uid=_uid(row, "study_uid"),
            series_uid=_uid(row, "series_uid"),
            sop_uid=_uid(row, "sop_uid"),
            acquired_at=_parse_date(date) if date else None,
            diagnosis=value("diagnosis"),
            findings=tuple(_parse_findings(row.get("findings") or "")),
        ),
        patient_id=value("patient_id"),
        labels={c: _label_value(c, v) for c in label_columns if (v := value(c)) is not None},
    )


def read_metadata_csv(path: Path, keep_columns: tuple[str, ...] = ()) -> MetadataTable:
    """Every row with its case or its reason; only the allow-listed columns (and `keep_columns`) are read.

    A row that cannot be used is refused (its image is skipped with the CSV line and the reason,
    never the values) and the rest go on."""
    if not path.is_file():
        raise MetadataError(f"no metadata CSV at {path}")
    columns, rows = _rows(path)
    if "file" not in columns:
        raise MetadataError(f"{path.name} needs a 'file' column naming each image; it has {len(columns)} other columns")
    label_columns = [c for c in columns if c in LABEL_COLUMNS or c in keep_columns]
    table = MetadataTable(name=path.name,
                          dropped_columns=sorted(c for c in columns if c not in KNOWN_COLUMNS and c not in label_columns))
    for line, row in rows:
        file_value = _file_path(_cell(row, "file") or "")
        if not file_value:
            table.problems.append((table.where(line), "empty 'file'"))
            continue
        try:
            case = replace(_case(row, label_columns, columns), origin=table.where(line))
        except MetadataError as error:
            table.rows.append(MetadataRow(line, file_value, None, str(error)))
            continue
        table.rows.append(MetadataRow(line, file_value, case))
    return table


def _instance_problem(entry: dict[str, Any], size: list[int]) -> str | None:
    """Why one COCO annotation cannot be stored, or None."""
    rle = entry.get("segmentation")
    if not isinstance(rle, dict) or not isinstance(rle.get("counts"), (str, bytes)) or "size" not in rle:
        return "has no compressed RLE segmentation"
    if entry.get("category_id") not in CATEGORY_NAMES:
        return f"has category_id {entry.get('category_id')}, not one of the archive's categories {sorted(CATEGORY_NAMES)}"
    if [int(s) for s in rle["size"]] != size:
        return f"mask size {list(rle['size'])} differs from its image's {size}"
    counts = rle["counts"].decode("ascii", "replace") if isinstance(rle["counts"], bytes) else rle["counts"]
    try:
        runs = rle_run_lengths(counts)
    except ValueError as error:
        return f"RLE does not decode: {error}"
    if any(run < 0 for run in runs) or sum(runs) != size[0] * size[1]:
        return f"RLE does not decode to {size[0]}x{size[1]} pixels"
    return None


def read_coco_annotations(path: Path) -> CocoAnnotations:
    """COCO instances with RLE masks, keyed by the stem of their image's `file_name`, each checked
    before anything is stored: RLE that decodes to its image's size, a `category_id` of the archive's categories, an
    `instance_id` unique within its image. An image with a bad annotation is refused whole (its
    file is skipped with the reason), so a corrected file can be ingested again."""
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
        files = {entry["id"]: Path(entry["file_name"]).stem for entry in coco["images"]}
        sizes = {entry["id"]: [int(entry["height"]), int(entry["width"])] for entry in coco["images"]}
        entries = list(coco["annotations"])
    except FileNotFoundError as error:
        raise MetadataError(f"no annotations file at {path}") from error
    except UnicodeDecodeError:
        raise MetadataError(f"{path.name} is not UTF-8 text: save it as UTF-8 and ingest again") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise MetadataError(f"{path.name} is not COCO JSON with images and annotations ({type(error).__name__})") from None
    result = CocoAnnotations()
    seen: dict[str, set[int]] = {}
    for entry in entries:
        image_id = entry.get("image_id") if isinstance(entry, dict) else None
        if image_id not in files:
            raise MetadataError(f"{path.name}: annotation {entry.get('id') if isinstance(entry, dict) else '?'} names no listed image")
        key = files[image_id]
        problem = _instance_problem(entry, sizes[image_id])
        instance_id = entry.get("instance_id", entry.get("id"))
        if problem is None and (not isinstance(instance_id, int) or instance_id <= 0):
            problem = "has no positive integer instance_id"
        if problem is None and instance_id in seen.setdefault(key, set()):
            problem = f"repeats instance_id {instance_id} of its image"
        if problem is not None:
            result.refused.setdefault(key, f"{path.name} annotation {entry.get('id')} {problem}")
            continue
        seen[key].add(instance_id)
        rle = entry["segmentation"]
        counts = rle["counts"]
        result.instances.setdefault(key, []).append(
            CocoInstance(
                category_id=int(entry["category_id"]),
                instance_id=instance_id,
                mask_rle={
                    "size": [int(s) for s in rle["size"]],
                    "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
                },
            )
        )
    for key in result.refused:
        result.instances.pop(key, None)
    return result
