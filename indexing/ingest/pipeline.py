"""The ingest loop: batches of items -> stored files + rows, one transaction per batch.

Within a batch, files are written first and rows committed after; if anything fails before the
commit, the rows are rolled back and the files this batch created are removed, so the archive
never has a row without a file nor (after a handled failure) a file without a row. Re-ingesting
adds nothing: images are recognised by the sha256 of their pixels and, for DICOM, their SOP UID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from indexing import store
from indexing.filestore import FileStore
from indexing.ingest.decode import SkipFile, encode_png, pixel_digest
from indexing.ingest.metadata import CaseMetadata, CocoInstance, pseudonymize
from indexing.ingest.sources import Candidate, IngestItem

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    added_ids: list[int] = field(default_factory=list)
    already_present: int = 0
    annotations_added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item name, reason)

    @property
    def added(self) -> int:
        return len(self.added_ids)


@dataclass(frozen=True)
class IngestContext:
    """Everything an ingest writes to and matches against."""

    sessions: sessionmaker[Session]
    files: FileStore
    pseudonym_key: bytes
    pseudonym_hex_chars: int
    metadata: dict[str, CaseMetadata] = field(default_factory=dict)
    annotations: dict[str, list[CocoInstance]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Loaded:
    item: IngestItem
    candidate: Candidate


def _record(context: IngestContext, loaded: _Loaded, sha256: str, stored_path: str, width: int, height: int) -> store.NewImage:
    """Merge DICOM tags (authoritative for identity) with the metadata CSV (findings, labels)."""
    facts = loaded.candidate.dicom
    case = context.metadata.get(loaded.item.key)
    if case is None and facts is not None and facts.sop_uid:
        case = context.metadata.get(facts.sop_uid)
    case = case or CaseMetadata()
    patient_id = (facts.patient_id if facts else None) or case.patient_id

    def pick(attribute: str):  # type: ignore[no-untyped-def]
        return (getattr(facts, attribute) if facts else None) or getattr(case, attribute)

    return store.NewImage(
        sha256=sha256,
        stored_path=stored_path,
        width=width,
        height=height,
        source=loaded.item.source,
        case_ref=case.case_ref,
        patient_ref=pseudonymize(context.pseudonym_key, patient_id, context.pseudonym_hex_chars) if patient_id else None,
        study_uid=pick("study_uid"),
        series_uid=pick("series_uid"),
        sop_uid=pick("sop_uid"),
        acquired_at=pick("acquired_at"),
        diagnosis=case.diagnosis,
        findings=list(case.findings),
        labels=dict(case.labels),
    )


def _annotations_fit(instances: list[CocoInstance], width: int, height: int) -> bool:
    return all(instance.mask_rle["size"] == [height, width] for instance in instances)


def _write_batch(context: IngestContext, batch: Sequence[_Loaded], report: IngestReport) -> None:
    """Store one batch in one transaction; on any failure leave no trace of it."""
    created_files: list[str] = []
    pending: list[tuple[store.NewImage, list[store.NewAnnotation]]] = []
    present_before, skipped_before = report.already_present, len(report.skipped)
    session = context.sessions()
    try:
        digests = [(loaded, pixel_digest(loaded.candidate.pixels)) for loaded in batch]
        known_sha = store.existing_sha256(session, [sha for _, sha in digests])
        sop_uids = [l.candidate.dicom.sop_uid for l, _ in digests if l.candidate.dicom and l.candidate.dicom.sop_uid]
        known_sop = store.existing_sop_uids(session, sop_uids)
        for loaded, sha in digests:
            sop = loaded.candidate.dicom.sop_uid if loaded.candidate.dicom else None
            if sha in known_sha or (sop and sop in known_sop):
                report.already_present += 1
                continue
            known_sha.add(sha)
            if sop:
                known_sop.add(sop)
            relative, created = context.files.put(sha, encode_png(loaded.candidate.pixels))
            if created:
                created_files.append(relative)
            height, width = loaded.candidate.pixels.shape[:2]
            instances = context.annotations.get(loaded.item.key, [])
            if instances and not _annotations_fit(instances, width, height):
                report.skipped.append((loaded.item.name, "annotations left out: mask size differs from the image"))
                instances = []
            annotations = [store.NewAnnotation(i.category_id, i.instance_id, i.mask_rle) for i in instances]
            pending.append((_record(context, loaded, sha, relative, width, height), annotations))
        rows = store.add_images(session, pending)
        added_ids = [row.id for row in rows]
        annotations_added = sum(len(annotations) for _, annotations in pending)
        context.files.sync()
        session.commit()
    except BaseException:
        session.rollback()
        for relative in created_files:
            context.files.remove(relative)
        report.already_present = present_before
        del report.skipped[skipped_before:]
        raise
    finally:
        session.close()
    report.added_ids.extend(added_ids)
    report.annotations_added += annotations_added


def run_ingest(
    context: IngestContext,
    items: Sequence[IngestItem],
    batch_size: int,
    on_item: Callable[[], None] | None = None,
) -> IngestReport:
    """Ingest `items` in batches; skipped items are reported with their reason and never stop the run."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    report = IngestReport()
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        with context.sessions() as session:
            known = store.existing_sop_uids(session, [item.sop_uid for item in chunk if item.sop_uid])
        batch: list[_Loaded] = []
        for item in chunk:
            if item.sop_uid and item.sop_uid in known:
                report.already_present += 1
            else:
                try:
                    batch.append(_Loaded(item, item.load()))
                except SkipFile as reason:
                    report.skipped.append((item.name, str(reason)))
            if on_item is not None:
                on_item()
        _write_batch(context, batch, report)
        log.info(
            "ingest batch %d: %d added, %d already present, %d skipped so far",
            start // batch_size + 1, report.added, report.already_present, len(report.skipped),
        )
    return report
