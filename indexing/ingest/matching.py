"""Which metadata CSV row describes which ingested file: the join that decides a case's diagnosis
and patient, so it never guesses.

A row names its file by the path relative to the ingested folder (`a/x.png`). A row that names
only a base name or a stem (`x.png`, `x`), as older CSVs do, is accepted where exactly one file
has that name; where several do, the whole ingest is refused, naming the clashing files, before
anything is written. A row whose path ends with a file's relative path (`images/0007.png` for a
phantom's `0007.png`) names that file. Two different rows naming one file refuse that file (which
is right cannot be told; an exact repeat is only reported); a row naming no file is reported by
its line. A row with a SOP Instance UID that names no file may still describe a DICOM of that UID
(known only once it is read).

With `strict`, any row that cannot be used refuses the whole ingest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from indexing.ingest.metadata import CaseMetadata, CocoAnnotations, MetadataError, MetadataRow, MetadataTable
from indexing.ingest.sources import IngestItem

MAX_NAMES_SHOWN = 5
DICOM_SOURCES = ("dicom", "dicomweb")


class AmbiguousMetadataError(MetadataError):
    """A row names a file by a name several ingested files have."""


@dataclass(frozen=True)
class MatchedMetadata:
    """The CSV's usable rows by the name of the item they describe (and by SOP UID for the rows that
    name no file), the items refused because of their row, and the rows that describe no item."""

    cases: dict[str, CaseMetadata] = field(default_factory=dict)
    by_sop_uid: dict[str, CaseMetadata | None] = field(default_factory=dict)  # None: rows disagree
    refused: dict[str, str] = field(default_factory=dict)  # item name -> reason (with the CSV line)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (CSV line, reason), no values
    dropped_columns: list[str] = field(default_factory=list)

    def case_for(self, name: str, sop_uid: str | None) -> CaseMetadata | None:
        case = self.cases.get(name)
        if case is None and sop_uid:
            case = self.by_sop_uid.get(sop_uid)
        return case


class _Names:
    """The items by relative path, base name and stem (one pass, so a join of 10k rows stays linear)."""

    def __init__(self, items: Sequence[IngestItem]) -> None:
        self.by_path = {item.name: item for item in items}
        self.by_base: dict[str, list[IngestItem]] = {}
        self.by_stem: dict[str, list[IngestItem]] = {}
        for item in items:
            path = PurePosixPath(item.name)
            self.by_base.setdefault(path.name, []).append(item)
            self.by_stem.setdefault(path.stem, []).append(item)

    def named(self, row: MetadataRow, table: MetadataTable) -> IngestItem | None:
        """The one item `row` names, None when it names none; AmbiguousMetadataError when it could be several."""
        if row.file in self.by_path:
            return self.by_path[row.file]
        parts = row.file.split("/")
        tails = [self.by_path[tail] for n in range(1, len(parts)) if (tail := "/".join(parts[n:])) in self.by_path]
        if tails:
            return tails[0]  # the longest path that matches
        if len(parts) > 1:
            return None
        same = self.by_base.get(row.file) or self.by_stem.get(PurePosixPath(row.file).stem, [])
        if len(same) > 1:
            names = ", ".join(item.name for item in same[:MAX_NAMES_SHOWN])
            more = f" and {len(same) - MAX_NAMES_SHOWN} more" if len(same) > MAX_NAMES_SHOWN else ""
            raise AmbiguousMetadataError(
                f"{table.where(row.line)} names a file by a name {len(same)} ingested files have ({names}{more}): "
                "name each file by its path relative to the ingested folder; nothing was ingested"
            )
        return same[0] if same else None


def _by_sop_uid(matched: MatchedMetadata, case: CaseMetadata, where: str) -> None:
    """Index a row by its SOP UID; a second, different row for one UID is reported and matches no DICOM."""
    uid = case.case.sop_uid or ""
    if uid not in matched.by_sop_uid:
        matched.by_sop_uid[uid] = case
        return
    earlier = matched.by_sop_uid[uid]
    if earlier is None or replace(earlier, origin="") != replace(case, origin=""):
        matched.problems.append((where, "gives another case a SOP Instance UID an earlier row has"))
        matched.by_sop_uid[uid] = None


def match_metadata(table: MetadataTable, items: Sequence[IngestItem], strict: bool = False) -> MatchedMetadata:
    """Join `table`'s rows to `items` (see the module doc); raises before anything is written."""
    matched = MatchedMetadata(problems=list(table.problems), dropped_columns=list(table.dropped_columns))
    may_be_dicom = any(item.source in DICOM_SOURCES for item in items)
    first_line: dict[str, int] = {}
    names = _Names(items)
    for row in table.rows:
        where = table.where(row.line)
        item = names.named(row, table)
        if item is None:
            if row.problem is not None:
                matched.problems.append((where, row.problem))
            elif row.case is not None and row.case.case.sop_uid and may_be_dicom:
                _by_sop_uid(matched, row.case, where)
            else:
                matched.problems.append((where, "names no file of the ingested folder"))
            continue
        if item.name in first_line:
            earlier = first_line[item.name]
            kept = matched.cases.get(item.name)
            if kept is not None and row.case is not None and replace(kept, origin="") == replace(row.case, origin=""):
                matched.problems.append((where, f"repeats line {earlier}"))  # the same case again: no doubt which
                continue
            matched.problems.append((where, f"names the same file as line {earlier}"))
            matched.refused[item.name] = f"{table.name} lines {earlier} and {row.line} both describe it"
            matched.cases.pop(item.name, None)
            continue
        first_line[item.name] = row.line
        if row.case is None:
            matched.refused[item.name] = f"{where}: {row.problem}"
        else:
            matched.cases[item.name] = row.case
            if row.case.case.sop_uid and may_be_dicom:
                _by_sop_uid(matched, row.case, where)  # the same instance exported as DICOM elsewhere in the folder
    if strict and (matched.problems or matched.refused):
        reasons = [f"{where}: {reason}" for where, reason in matched.problems] + list(matched.refused.values())
        raise MetadataError(f"{reasons[0]} ({len(reasons)} metadata problems in all); with --strict nothing was ingested")
    return matched


def check_annotation_names(annotations: CocoAnnotations, items: Sequence[IngestItem], source_name: str) -> None:
    """COCO names images by file name only: refuse the ingest (nothing written) when an annotated
    name is the name of files in different folders (`a/x.png`, `b/x.png`), whose masks would be
    given to both. A photo and its DICOM side by side (`x.png`, `x.dcm`) are one image."""
    folders: dict[str, dict[str, list[str]]] = {}
    for item in items:
        path = PurePosixPath(item.name)
        folders.setdefault(item.key, {}).setdefault(str(path.parent), []).append(item.name)
    for key in [*annotations.instances, *annotations.refused]:
        found = folders.get(key, {})
        if len(found) > 1:
            names = sorted(name for group in found.values() for name in group)
            raise AmbiguousMetadataError(
                f"{source_name} annotates {key!r}, a name files in {len(found)} folders have ({', '.join(names[:MAX_NAMES_SHOWN])}): "
                "ingest each folder with its own annotations; nothing was ingested"
            )
