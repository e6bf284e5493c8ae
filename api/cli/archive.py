"""`s2m archive ...`: fill and inspect the archive store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from api.cli.errors import add_group

if TYPE_CHECKING:
    from indexing.archive import Archive

HELP = "The archive store: ingest, list, show, stats, delete, check, export, backup, restore."

MAX_REASONS_SHOWN = 50


def open_archive(read_only: bool = False, any_known_revision: bool = False) -> "Archive":
    """The archive of the environment's settings, for every command that uses it (`with ... as archive`,
    closed however the command ends); `read_only` for commands that only look (they work on a
    read-only database file and write nothing); `any_known_revision` for a backup before an upgrade."""
    from indexing.archive import Archive
    from indexing.settings import Settings

    return Archive.open(Settings.from_env(), read_only=read_only, any_known_revision=any_known_revision)


def ingest(
    path: Optional[Path] = typer.Argument(None, help="a folder of PNG/JPEG or DICOM files, a phantom dataset, or one file"),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="CSV with a 'file' column (and case_id, patient_id, study_date, diagnosis, findings, UIDs, labels)"),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="COCO JSON with RLE instance masks"),
    dicomweb: Optional[str] = typer.Option(None, "--dicomweb", help="DICOMweb service root (QIDO-RS + WADO-RS), e.g. http://pacs/dicom-web"),
    keep_column: list[str] = typer.Option([], "--keep-column", help="also keep this metadata column as a label (repeatable); otherwise only the known columns and tonsil_grade, patient_sex, patient_age are kept"),
    keep_file_names: bool = typer.Option(False, "--keep-file-names", help="keep each file's base name when it passes the identifier screen (indexing/ingest/names.py); off by default: names may identify patients"),
    strict: bool = typer.Option(False, "--strict", help="refuse the whole ingest (nothing written) when any metadata row cannot be used: more or fewer cells than the header, two rows for one file, a row for no file, a bad value"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Add images to the archive; re-ingesting the same files adds nothing (and restores a row's missing file). Skipped files are listed with the reason."""
    if (path is None) == (dicomweb is None):
        typer.echo("error: give either PATH or --dicomweb URL", err=True)
        raise typer.Exit(2)
    from indexing.ingest.run import ingest_dicomweb, ingest_path

    with open_archive() as archive:
        if dicomweb is not None:
            from dicomweb_client.api import DICOMwebClient

            report = ingest_dicomweb(archive, DICOMwebClient(url=dicomweb), metadata, progress, tuple(keep_column), strict)
        else:
            report = ingest_path(archive, path, metadata, annotations, progress, tuple(keep_column), keep_file_names, strict)
    restored = f", {report.restored} missing files restored" if report.restored else ""
    restored += f", {report.linked} linked to their DICOM's UIDs" if report.linked else ""
    unused = f", {len(report.metadata_problems)} metadata rows not used" if report.metadata_problems else ""
    typer.echo(
        f"added {report.added} images ({report.annotations_added} annotations), "
        f"{report.already_present} already in the archive{restored}, {len(report.skipped)} skipped{unused}"
    )
    if report.dropped_columns:
        typer.echo(f"  metadata columns not kept (use --keep-column NAME to keep one): {', '.join(report.dropped_columns)}")
    if report.names_withheld:
        why = "they did not pass the identifier screen" if keep_file_names else "use --keep-file-names to keep the ones that pass the identifier screen"
        typer.echo(f"  original file names not kept for {report.names_withheld} images ({why})")
    for label, reasons in (("skipped", report.skipped), ("not used:", report.metadata_problems)):
        for name, reason in reasons[:MAX_REASONS_SHOWN]:
            typer.echo(f"  {label} {name}: {reason}")
        if len(reasons) > MAX_REASONS_SHOWN:
            typer.echo(f"  ... and {len(reasons) - MAX_REASONS_SHOWN} more")


def list_images(
    limit: int = typer.Option(20, min=1),
    offset: int = typer.Option(0, min=0),
    diagnosis: Optional[str] = typer.Option(None),
    include_deleted: bool = typer.Option(False, "--include-deleted"),
) -> None:
    """List archive images (id, size, source, diagnosis, study UID)."""
    from indexing import store

    with open_archive(read_only=True) as archive:
        with archive.sessions() as session:
            rows = store.list_images(session, offset, limit, include_deleted, diagnosis)
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

    with open_archive(read_only=True) as archive:
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
    typer.echo(json.dumps(fields, indent=2, default=str))


def stats() -> None:
    """Counts by source and diagnosis, derived data, the active index build."""
    from indexing import store

    with open_archive(read_only=True) as archive:
        with archive.sessions() as session:
            summary = store.archive_stats(session)
    typer.echo(f"images: {summary.images} (+{summary.deleted} deleted)")
    typer.echo("by source: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_source.items())))
    typer.echo("by diagnosis: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_diagnosis.items())))
    typer.echo(f"annotations: {summary.annotations}  sketches: {summary.sketches}  embeddings: {summary.embeddings}")
    typer.echo(f"active index build: {summary.active_build_id or 'none'}")


def delete(image_id: int = typer.Argument(...)) -> None:
    """Soft-delete an image: it stays on disk and in the DB, and leaves the index at the next refresh."""
    from indexing import store

    with open_archive() as archive:
        with archive.sessions() as session:
            store.soft_delete_image(session, image_id)
            session.commit()
    typer.echo(f"image {image_id} deleted")


def check(
    remove_orphans: bool = typer.Option(False, "--remove-orphans", help="delete stored files that no row points at, and stale .tmp-* files (waits for running ingests)"),
    repair: Optional[Path] = typer.Option(None, "--repair", help="rewrite missing or damaged files from this folder (or file) of the original images, matched by their pixels"),
) -> None:
    """Compare rows and stored files, and each file's pixels with its sha256; exit 1 listing what is wrong."""
    from indexing import integrity

    with open_archive(read_only=not (remove_orphans or repair)) as archive:
        if repair is not None:
            for path in integrity.repair(archive, repair).restored:
                typer.echo(f"restored: {path}")
        if remove_orphans:
            for path in integrity.remove_orphans(archive):
                typer.echo(f"removed file without row: {path}")
        report = integrity.check_archive(archive)
    for label, paths in (
        ("file without row", report.orphan_files),
        ("row without file", report.missing_files),
        ("file damaged (pixels differ from its sha256)", report.damaged_files),
        ("half-written file", report.temporary_files),
    ):
        for path in paths:
            typer.echo(f"{label}: {path}")
    if not report.ok:
        hints = []
        if report.missing_files or report.damaged_files:
            hints.append("--repair FOLDER (the original images) or re-ingest them")
        if report.orphan_files or report.temporary_files:
            hints.append("--remove-orphans")
        typer.echo(f"archive inconsistent: run `s2m archive check {' / '.join(hints)}`", err=True)
        raise typer.Exit(1)
    typer.echo("archive consistent")


def export(
    out: Path = typer.Argument(..., help="new or empty folder that receives images/, masks/, annotations.json, metadata.csv"),
    annotated_only: bool = typer.Option(False, "--annotated-only", help="only images with expert instance masks (for the synthesizer)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="at most N images, lowest ids first"),
) -> None:
    """Write the live archive images as a dataset folder that `s2m train ... --data OUT` reads."""
    from indexing.export import export_dataset

    with open_archive(read_only=True) as archive:  # reads the archive, writes only OUT
        report = export_dataset(archive, out, annotated_only=annotated_only, limit=limit)
    copied = f" ({report.copied} copied, symlinks unavailable)" if report.copied else ""
    typer.echo(f"exported {report.images} images ({report.annotated} annotated) to {report.out}{copied}")


def backup(
    out: Path = typer.Argument(..., help="new or empty folder that receives the backup (database, files, key, manifest.json)"),
) -> None:
    """Back up the database (one snapshot), the image files, the pseudonym key and the active index build, while the service runs."""
    from indexing.backup import KEY_FROM_ENVIRONMENT, backup_archive

    with open_archive(any_known_revision=True) as archive:  # writes nothing to it; the file-store lock needs a writable data dir
        report = backup_archive(archive, out)
    typer.echo(f"backed up {report.images} images and index build {report.active_build_id or 'none'} "
               f"to {report.out} ({report.files} files, {report.bytes / 1e6:.1f} MB)")
    if report.pseudonym_key == KEY_FROM_ENVIRONMENT:
        typer.echo("  the pseudonym key comes from S2M_PSEUDONYM_KEY and is not in the backup: keep it with your secrets")


def restore(
    source: Path = typer.Argument(..., help="a folder that `s2m archive backup` wrote"),
) -> None:
    """Restore a backup into the empty data dir and database of S2M_DATA_DIR / S2M_DATABASE_URL (checked whole first)."""
    from indexing.restore import restore_archive
    from indexing.settings import Settings

    report = restore_archive(Settings.from_env(), source)
    typer.echo(f"restored {report.images} images and index build {report.active_build_id or 'none'} into {report.data_dir} "
               f"(schema revision {report.revision}); next: `s2m db upgrade` if this version is newer, then `s2m archive check`")


def register(app: typer.Typer) -> None:
    """Add the `s2m archive` command group to the top-level app."""
    add_group(app, "archive", HELP, {
        "ingest": ingest, "list": list_images, "show": show, "stats": stats, "delete": delete, "check": check,
        "export": export, "backup": backup, "restore": restore})
