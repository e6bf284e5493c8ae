"""`s2m archive ...`: fill and inspect the archive store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from api.cli.errors import add_command

if TYPE_CHECKING:
    from indexing.archive import Archive

HELP = "The archive store: ingest, list, show, stats, delete, export."

MAX_REASONS_SHOWN = 50


def _open() -> "Archive":
    from indexing.archive import Archive
    from indexing.settings import Settings

    return Archive.open(Settings.from_env())


def ingest(
    path: Optional[Path] = typer.Argument(None, help="a folder of PNG/JPEG or DICOM files, a phantom dataset, or one file"),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="CSV with a 'file' column (and case_id, patient_id, study_date, diagnosis, findings, UIDs, labels)"),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="COCO JSON with RLE instance masks"),
    dicomweb: Optional[str] = typer.Option(None, "--dicomweb", help="DICOMweb service root (QIDO-RS + WADO-RS), e.g. http://pacs/dicom-web"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Add images to the archive; re-ingesting the same files adds nothing. Skipped files are listed with the reason."""
    if (path is None) == (dicomweb is None):
        typer.echo("error: give either PATH or --dicomweb URL", err=True)
        raise typer.Exit(2)
    from indexing.ingest.run import ingest_dicomweb, ingest_path

    archive = _open()
    try:
        if dicomweb is not None:
            from dicomweb_client.api import DICOMwebClient

            report = ingest_dicomweb(archive, DICOMwebClient(url=dicomweb), metadata, progress=progress)
        else:
            report = ingest_path(archive, path, metadata, annotations, progress=progress)
    finally:
        archive.close()
    typer.echo(
        f"added {report.added} images ({report.annotations_added} annotations), "
        f"{report.already_present} already in the archive, {len(report.skipped)} skipped"
    )
    for name, reason in report.skipped[:MAX_REASONS_SHOWN]:
        typer.echo(f"  skipped {name}: {reason}")
    if len(report.skipped) > MAX_REASONS_SHOWN:
        typer.echo(f"  ... and {len(report.skipped) - MAX_REASONS_SHOWN} more")


def list_images(
    limit: int = typer.Option(20, min=1),
    offset: int = typer.Option(0, min=0),
    diagnosis: Optional[str] = typer.Option(None),
    include_deleted: bool = typer.Option(False, "--include-deleted"),
) -> None:
    """List archive images (id, size, source, diagnosis, study UID)."""
    from indexing import store

    archive = _open()
    try:
        with archive.sessions() as session:
            rows = store.list_images(session, offset, limit, include_deleted, diagnosis)
    finally:
        archive.close()
    for image in rows:
        deleted = "  (deleted)" if image.deleted_at else ""
        typer.echo(
            f"{image.id:>8}  {image.width}x{image.height}  {image.source:<8}  "
            f"{image.diagnosis or '-':<20}  {image.study_uid or '-'}{deleted}"
        )


def show(image_id: int = typer.Argument(...)) -> None:
    """Everything the archive holds about one image (deleted ones included)."""
    import json

    from indexing import store

    archive = _open()
    try:
        with archive.sessions() as session:
            image = store.get_image(session, image_id, include_deleted=True)
            if image is None:
                typer.echo(f"error: no image with id {image_id}", err=True)
                raise typer.Exit(1)
            instances = store.list_annotations(session, image_id)
            fields = {
                column.name: getattr(image, column.key)
                for column in image.__table__.columns  # type: ignore[attr-defined]
            }
            fields["file"] = str(archive.files.absolute(image.stored_path))
            fields["annotations"] = [
                {"category_id": a.category_id, "instance_id": a.instance_id, "origin": a.origin, "model_version": a.model_version}
                for a in instances
            ]
    finally:
        archive.close()
    typer.echo(json.dumps(fields, indent=2, default=str))


def stats() -> None:
    """Counts by source and diagnosis, derived data, the active index build."""
    from indexing import store

    archive = _open()
    try:
        with archive.sessions() as session:
            summary = store.archive_stats(session)
    finally:
        archive.close()
    typer.echo(f"images: {summary.images} (+{summary.deleted} deleted)")
    typer.echo("by source: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_source.items())))
    typer.echo("by diagnosis: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_diagnosis.items())))
    typer.echo(f"annotations: {summary.annotations}  sketches: {summary.sketches}  embeddings: {summary.embeddings}")
    typer.echo(f"active index build: {summary.active_build_id or 'none'}")


def delete(image_id: int = typer.Argument(...)) -> None:
    """Soft-delete an image: it stays on disk and in the DB, and leaves the index at the next refresh."""
    from indexing import store

    archive = _open()
    try:
        with archive.sessions() as session:
            store.soft_delete_image(session, image_id)
            session.commit()
    finally:
        archive.close()
    typer.echo(f"image {image_id} deleted")


def check(
    remove_orphans: bool = typer.Option(False, "--remove-orphans", help="delete stored files that no row points at"),
) -> None:
    """Compare rows and stored files; exit 1 listing any file without a row or row without a file."""
    from indexing import store

    archive = _open()
    try:
        with archive.sessions() as session:
            report = store.consistency(session, archive.files)
        if remove_orphans:
            for path in report.orphan_files:
                archive.files.remove(path)
                typer.echo(f"removed file without row: {path}")
            with archive.sessions() as session:
                report = store.consistency(session, archive.files)
    finally:
        archive.close()
    for path in report.orphan_files:
        typer.echo(f"file without row: {path}")
    for path in report.missing_files:
        typer.echo(f"row without file: {path}")
    if not report.ok:
        raise typer.Exit(1)
    typer.echo("archive consistent")


def export(
    out: Path = typer.Argument(..., help="new or empty folder that receives images/, masks/, annotations.json, metadata.csv"),
    annotated_only: bool = typer.Option(False, "--annotated-only", help="only images with expert instance masks (for the synthesizer)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="at most N images, lowest ids first"),
) -> None:
    """Write the live archive images as a dataset folder that `s2m train ... --data OUT` reads."""
    from indexing.export import export_dataset

    archive = _open()
    try:
        report = export_dataset(archive, out, annotated_only=annotated_only, limit=limit)
    finally:
        archive.close()
    copied = f" ({report.copied} copied, symlinks unavailable)" if report.copied else ""
    typer.echo(f"exported {report.images} images ({report.annotated} annotated) to {report.out}{copied}")


def register(app: typer.Typer) -> None:
    """Add the `s2m archive` command group to the top-level app."""
    group = typer.Typer(help=HELP, no_args_is_help=True)
    add_command(group, "ingest", ingest)
    add_command(group, "list", list_images)
    add_command(group, "show", show)
    add_command(group, "stats", stats)
    add_command(group, "delete", delete)
    add_command(group, "check", check)
    add_command(group, "export", export)
    app.add_typer(group, name="archive")
