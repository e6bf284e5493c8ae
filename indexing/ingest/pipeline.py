"""The ingest loop: batches of items -> stored files + rows, one transaction per batch.

Within a batch, files are written first and rows committed after, under the file-store lock held
shared (`indexing.locks`). If anything fails before the commit, the rows are rolled back and the
files this batch wrote are removed, but only under the exclusive lock and only those no committed
row points at: another process may have committed a row for the same pixels meanwhile. A batch
that loses such a race (a unique sha256 or SOP UID committed by another ingest) is retried, and
sees those images as already present. Re-ingesting adds nothing, and restores the file of a row
whose file has gone. A DICOM is one image by its pixels and by its SOP Instance UID: one whose
pixels are stored without UIDs (its photo came first) gives that row its UIDs ("linked"); one
whose UID is stored with other pixels is refused, never overwritten or silently dropped. Batches close at an image count or a decoded-pixel count, whichever comes
first, so memory is bounded whatever the image sizes. Database errors are reported by kind only:
their text can hold row values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from formats.errors import ProjectError
from indexing import store
from indexing.filestore import FileStore
from indexing.ingest.decode import SkipFile, encode_png, pixel_digest
from indexing.ingest.matching import MatchedMetadata
from indexing.ingest.metadata import CaseMetadata, CocoAnnotations, CocoInstance, pseudonymize
from indexing.ingest.names import kept_file_name
from indexing.ingest.sources import Candidate, IngestItem
from indexing.integrity import remove_unreferenced
from indexing.locks import FileStoreLock

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 3  # a batch that lost a race to a concurrent ingest is retried this many times in all
OTHER_PIXELS = ("its SOP Instance UID is already in the archive with other pixels: not stored "
                "(one UID names one image; check which of the two is right)")


class IngestError(ProjectError):
    """A batch the database refused; nothing of it was stored (the message holds no row value)."""


@dataclass
class IngestReport:
    added_ids: list[int] = field(default_factory=list)
    already_present: int = 0
    restored: int = 0  # rows already present whose missing file this run wrote back
    linked: int = 0  # rows of the same pixels, stored without UIDs, that this run gave their DICOM's UIDs
    annotations_added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item name, reason)
    metadata_problems: list[tuple[str, str]] = field(default_factory=list)  # (CSV line, reason): rows not used
    dropped_columns: list[str] = field(default_factory=list)  # metadata columns not kept (names only)
    names_withheld: int = 0  # added images whose original file name was not kept (indexing/ingest/names.py)

    @property
    def added(self) -> int:
        return len(self.added_ids)


@dataclass(frozen=True)
class IngestContext:
    """Everything an ingest writes to and matches against."""

    sessions: sessionmaker[Session]
    files: FileStore
    lock: FileStoreLock
    pseudonym_key: bytes
    pseudonym_hex_chars: int
    metadata: MatchedMetadata = field(default_factory=MatchedMetadata)
    annotations: CocoAnnotations = field(default_factory=CocoAnnotations)
    keep_file_names: bool = False  # the operator asks to keep screened file names (indexing/ingest/names.py)


@dataclass(frozen=True)
class _Loaded:
    item: IngestItem
    candidate: Candidate

    @property
    def pixels(self) -> int:
        height, width = self.candidate.pixels.shape[:2]
        return height * width


def _record(context: IngestContext, loaded: _Loaded, sha256: str, stored_path: str, width: int, height: int) -> store.NewImage:
    """Merge DICOM tags (authoritative for identity) with the metadata CSV (findings, labels)."""
    facts = loaded.candidate.dicom
    case = context.metadata.case_for(loaded.item.name, facts.sop_uid if facts else None) or CaseMetadata()
    patient_id = (facts.patient_id if facts else None) or case.patient_id

    def pick(attribute: str):  # type: ignore[no-untyped-def]
        return (getattr(facts, attribute) if facts else None) or getattr(case.case, attribute)

    return store.NewImage(
        sha256=sha256,
        stored_path=stored_path,
        width=width,
        height=height,
        source=loaded.item.source,
        original_name=kept_file_name(loaded.item.name, loaded.item.source, context.keep_file_names, patient_id),
        case=replace(
            case.case,
            patient_ref=pseudonymize(context.pseudonym_key, patient_id, context.pseudonym_hex_chars) if patient_id else None,
            study_uid=pick("study_uid"),
            series_uid=pick("series_uid"),
            sop_uid=pick("sop_uid"),
            acquired_at=pick("acquired_at"),
        ),
        labels=dict(case.labels),
    )


def _annotations_fit(instances: list[CocoInstance], width: int, height: int) -> bool:
    return all(instance.mask_rle["size"] == [height, width] for instance in instances)


def _case_origin(context: IngestContext, loaded: _Loaded) -> str:
    facts = loaded.candidate.dicom
    case = context.metadata.case_for(loaded.item.name, facts.sop_uid if facts else None)
    return case.origin if case is not None else ""


def _write_batch(context: IngestContext, batch: Sequence[_Loaded], report: IngestReport) -> None:
    """Store one batch in one transaction; on any failure leave no trace of it (see the module doc)."""
    written: list[str] = []  # files this batch created (removed again if it fails)
    touched: list[str] = []  # and the files it restored: every rename to make durable before the commit
    pending: list[tuple[store.NewImage, list[store.NewAnnotation]]] = []
    skipped: list[tuple[str, str]] = []
    present = restored = linked = 0
    try:
        with context.lock.writing(), context.sessions() as session:
            digests = [(loaded, pixel_digest(loaded.candidate.pixels)) for loaded in batch]
            known_sha = store.existing_sha256(session, [sha for _, sha in digests])
            sop_uids = [l.candidate.dicom.sop_uid for l, _ in digests if l.candidate.dicom and l.candidate.dicom.sop_uid]
            known_sop = store.existing_sop_uids(session, sop_uids)
            for loaded, sha in digests:
                facts = loaded.candidate.dicom
                sop = facts.sop_uid if facts else None
                if sha in known_sha:
                    if not context.files.absolute(known_sha[sha]).exists():
                        touched.append(context.files.put(sha, encode_png(loaded.candidate.pixels))[0])
                        restored += 1
                    if facts and sop and sop not in known_sop and store.link_dicom_uids(session, sha, facts.study_uid, facts.series_uid, sop):
                        known_sop.add(sop)
                        linked += 1
                    else:
                        present += 1
                    continue
                if sop and sop in known_sop:
                    skipped.append((loaded.item.name, OTHER_PIXELS))
                    continue
                height, width = loaded.candidate.pixels.shape[:2]
                instances = context.annotations.instances.get(loaded.item.key, [])
                if instances and not _annotations_fit(instances, width, height):
                    skipped.append((loaded.item.name, "its annotations' mask size differs from the image"))
                    continue
                record = _record(context, loaded, sha, context.files.relative_path(sha), width, height)
                problem = store.record_problem(record)
                if problem is not None:
                    origin = _case_origin(context, loaded)
                    skipped.append((loaded.item.name, f"{origin}: {problem}" if origin else problem))
                    continue
                known_sha[sha] = record.stored_path
                if sop:
                    known_sop.add(sop)
                relative, created = context.files.put(sha, encode_png(loaded.candidate.pixels))
                if created:
                    written.append(relative)
                    touched.append(relative)
                annotations = [store.NewAnnotation(i.category_id, i.instance_id, i.mask_rle) for i in instances]
                pending.append((record, annotations))
            rows = store.add_images(session, pending)
            added_ids = [row.id for row in rows]
            context.files.sync(touched)
            session.commit()
    except BaseException:
        remove_unreferenced(context.sessions, context.files, context.lock, written)
        raise
    report.already_present += present
    report.restored += restored
    report.linked += linked
    report.skipped.extend(skipped)
    report.added_ids.extend(added_ids)
    report.annotations_added += sum(len(annotations) for _, annotations in pending)
    report.names_withheld += sum(1 for record, _ in pending if record.original_name is None and record.source != "dicomweb")


def _write_with_retries(context: IngestContext, batch: Sequence[_Loaded], report: IngestReport, number: int) -> None:
    names = f"{batch[0].item.name} .. {batch[-1].item.name}" if batch else "(empty)"
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            _write_batch(context, batch, report)
            return
        except IntegrityError as error:
            if attempt == WRITE_ATTEMPTS:
                raise IngestError(
                    f"ingest batch {number} ({names}) was refused by the database ({type(error.orig).__name__}) "
                    f"{WRITE_ATTEMPTS} times; nothing of it was stored: run the ingest again"
                ) from None
            log.info("ingest batch %d lost a race to a concurrent ingest; retrying (%d)", number, attempt)
        except (SQLAlchemyError, ValueError) as error:  # psycopg2 raises ValueError for a value it cannot send
            cause = type(getattr(error, "orig", None) or error).__name__
            raise IngestError(
                f"ingest batch {number} ({names}) failed in the database ({cause}); nothing of it was stored"
            ) from None


def run_ingest(
    context: IngestContext,
    items: Sequence[IngestItem],
    batch_size: int,
    batch_pixels: int,
    on_item: Callable[[], None] | None = None,
) -> IngestReport:
    """Ingest `items` in batches of at most `batch_size` images and `batch_pixels` decoded pixels
    (one image larger than that is a batch of its own); skipped items are reported with their
    reason and never stop the run."""
    if batch_size <= 0 or batch_pixels <= 0:
        raise ValueError(f"batch_size and batch_pixels must be positive, got {batch_size}, {batch_pixels}")
    report = IngestReport(dropped_columns=list(context.metadata.dropped_columns),
                          metadata_problems=list(context.metadata.problems))
    number = 0

    def flush(batch: list[_Loaded]) -> None:
        nonlocal number
        number += 1
        _write_with_retries(context, batch, report, number)
        batch.clear()
        log.info(
            "ingest batch %d: %d added, %d already present, %d skipped so far",
            number, report.added, report.already_present, len(report.skipped),
        )

    batch: list[_Loaded] = []
    held = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        with context.sessions() as session:
            known = store.existing_sop_uids(session, [item.sop_uid for item in chunk if item.sop_uid])
        for item in chunk:
            if item.sop_uid and item.sop_uid in known:
                report.already_present += 1
            elif item.name in context.metadata.refused:
                report.skipped.append((item.name, context.metadata.refused[item.name]))
            elif item.key in context.annotations.refused:
                report.skipped.append((item.name, context.annotations.refused[item.key]))
            else:
                try:
                    loaded = _Loaded(item, item.load())
                except SkipFile as reason:
                    report.skipped.append((item.name, str(reason)))
                else:
                    if batch and held + loaded.pixels > batch_pixels:
                        flush(batch)
                        held = 0
                    batch.append(loaded)
                    held += loaded.pixels
            if on_item is not None:
                on_item()
            if len(batch) >= batch_size:
                flush(batch)
                held = 0
    if batch:
        flush(batch)
    return report
