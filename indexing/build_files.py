"""The files of index builds under `<data dir>/indexes/`, and which of them may be deleted.

A build's index and transforms files are immutable once written; a newly active build leaves the
previous one's files for the engines that may still be swapping away from it, and older retired
builds' files go. Not-yet-active builds (`ready`: a new bundle's build written beside the active
one, activated later) keep theirs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select

from indexing.archive import Archive
from indexing.models import IndexBuild

INDEX_FOLDER = "indexes"
KEEP_RETIRED = 1  # retired builds whose files stay: the one an engine may be swapping away from

logger = logging.getLogger(__name__)


def _build_files(row: IndexBuild) -> list[str]:
    """The data-dir-relative paths of a build's index and transforms files."""
    return [row.file_path, *([row.config["transforms_file"]] if "transforms_file" in (row.config or {}) else [])]


def prune_retired_builds(archive: Archive, keep: int = KEEP_RETIRED) -> list[Path]:
    """Delete the files of retired builds but the `keep` most recently retired; returns what was deleted.

    Never touches the active build, a build still being recorded (`building`/`ready`), or the
    builds retired last: an engine that read the previous active row just before a swap may still
    be reading its files (once loaded, a FAISS index lives in memory and needs its file no more).
    The rows stay, as the record of what was served; only files inside the index folder go.
    """
    data_dir = archive.settings.data_dir
    folder = (data_dir / INDEX_FOLDER).resolve()
    with archive.sessions() as session:
        rows = session.scalars(select(IndexBuild).order_by(IndexBuild.activated_at.desc(), IndexBuild.id.desc())).all()
        retired = [row for row in rows if row.status == "retired"]
        kept = {path for row in rows if row.status != "retired" for path in _build_files(row)}
        kept.update(path for row in retired[:keep] for path in _build_files(row))
        doomed = {path for row in retired[keep:] for path in _build_files(row)} - kept
    deleted = []
    for relative in sorted(doomed):
        path = (data_dir / relative).resolve()
        if path.parent != folder or not path.is_file():
            continue  # already gone, or not a file of ours: leave it
        try:
            path.unlink()
        except OSError as error:  # the new build is active whatever happens here: say so, go on
            logger.warning("could not delete %s of a retired index build (%s)", path.name, type(error).__name__)
            continue
        deleted.append(path)
    if deleted:
        logger.info("deleted %d files of retired index builds", len(deleted))
    return deleted
