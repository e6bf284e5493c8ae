"""Ingest entry points used by the CLI and the benchmark: a path, or a DICOMweb server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from indexing.archive import Archive
from indexing.ingest.matching import MatchedMetadata, check_annotation_names, match_metadata
from indexing.ingest.metadata import CocoAnnotations, MetadataTable, read_coco_annotations, read_metadata_csv
from indexing.ingest.pipeline import IngestContext, IngestReport, run_ingest
from indexing.ingest.sources import IngestItem, dicomweb_items, discover


def _run(archive: Archive, items: Sequence[IngestItem], context: IngestContext, progress: bool) -> IngestReport:
    limits = archive.settings.ingest_batch_size, archive.settings.ingest_batch_pixels
    if not progress:
        return run_ingest(context, items, *limits)
    from generation.training import make_progress

    with make_progress() as bar:
        task = bar.add_task("ingest", total=len(items), status="")
        return run_ingest(context, items, *limits, on_item=lambda: bar.advance(task))


def _context(
    archive: Archive, items: Sequence[IngestItem], table: MetadataTable | None, annotations_json: Path | None,
    keep_file_names: bool = False, strict: bool = False,
) -> IngestContext:
    """Side files are read, checked and joined to the items, and the pseudonym key found, before anything is written."""
    metadata = match_metadata(table, items, strict) if table is not None else MatchedMetadata()
    annotations = read_coco_annotations(annotations_json) if annotations_json else CocoAnnotations()
    if annotations_json:
        check_annotation_names(annotations, items, annotations_json.name)
    return IngestContext(
        sessions=archive.sessions,
        files=archive.files,
        lock=archive.lock,
        pseudonym_key=archive.pseudonym_key(),
        pseudonym_hex_chars=archive.settings.pseudonym_hex_chars,
        metadata=metadata,
        annotations=annotations,
        keep_file_names=keep_file_names,
    )


def ingest_path(
    archive: Archive,
    path: Path,
    metadata_csv: Path | None = None,
    annotations_json: Path | None = None,
    progress: bool = False,
    keep_columns: tuple[str, ...] = (),
    keep_file_names: bool = False,
    strict: bool = False,
) -> IngestReport:
    """Ingest a file, a folder or a phantom dataset; explicit side files override a phantom's own.

    Side files are read (and any error in them raised) before anything is written; `strict` makes
    any metadata row that cannot be used such an error. Original file names are kept only as
    `indexing.ingest.names` allows (`keep_file_names`: the operator's ask).
    """
    settings = archive.settings
    side_files = tuple(p for p in (metadata_csv, annotations_json) if p is not None)
    found = discover(path, settings.max_image_pixels, settings.max_file_bytes, exclude=side_files)
    csv = metadata_csv or found.metadata_csv
    table = read_metadata_csv(csv, keep_columns) if csv else None
    context = _context(archive, found.items, table, annotations_json or found.annotations_json, keep_file_names, strict)
    return _run(archive, found.items, context, progress)


def ingest_dicomweb(
    archive: Archive,
    client,  # type: ignore[no-untyped-def]
    metadata_csv: Path | None = None,
    progress: bool = False,
    keep_columns: tuple[str, ...] = (),
    strict: bool = False,
) -> IngestReport:
    """Ingest every photograph a DICOMweb server lists (QIDO-RS) by retrieving it (WADO-RS)."""
    table = read_metadata_csv(metadata_csv, keep_columns) if metadata_csv else None  # refused before the walk
    items = dicomweb_items(client, archive.settings.max_image_pixels)
    context = _context(archive, items, table, None, strict=strict)
    return _run(archive, items, context, progress)
