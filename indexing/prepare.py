"""An archive made searchable in one call, and new images made searchable in another.

`prepare_archive` is what the demo, the evaluations and the benchmarks do to a dataset folder:
create (or upgrade) the archive, ingest the folder unless every image is in, then, unless the
active build is this bundle's over every live image, load S, C and E, embed what lacks vectors and
build the index. Each step keeps what an earlier run made, so a second run only checks.
`embed_and_refresh` is the service's refresh: embed what was added since the active build, then
refresh that build.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from generation.bundle import Bundle
from indexing import store
from indexing.archive import Archive
from indexing.fused_index import BuildConfig, IndexStatus, RefreshReport, build_index, index_status, refresh_index
from indexing.ingest.pipeline import IngestReport
from indexing.ingest.run import ingest_path
from indexing.ingest.sources import discover
from indexing.locks import index_build_lock
from indexing.settings import Settings
from indexing.shape import ShapeConfig
from indexing.vectors import DEFAULT_BATCH_SIZE, ArchiveModels, EmbedReport, embed_archive

INGEST, EMBED, INDEX = "ingest", "embed", "index"


@dataclass(frozen=True)
class PreparedArchive:
    """What `prepare_archive` found and did: a step that was not needed has no report and no seconds."""

    status: IndexStatus
    ingested: IngestReport | None = None
    embedded: EmbedReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # INGEST, EMBED, INDEX: each step that ran


def prepare_archive(settings: Settings, dataset: Path, bundle: Bundle, device: torch.device | str = "cpu",
                    models: ArchiveModels | None = None, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False,
                    on_step: Callable[[str, float, Any], None] | None = None) -> PreparedArchive:
    """Ingest `dataset` into the archive at `settings`, embed it with `bundle` and index it (each step only if needed).

    `models` (S, C and E of `bundle`) are loaded when the embedding is needed unless given;
    `on_step(step, seconds, report)` hears of each step that ran, as it ends."""
    seconds: dict[str, float] = {}

    def timed(step: str, work: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        report = work()
        seconds[step] = time.perf_counter() - began
        if on_step is not None:
            on_step(step, seconds[step], report)
        return report

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    archive = Archive.create(settings)
    try:
        ingested = embedded = None
        with archive.sessions() as session:
            present = len(store.live_image_ids(session))
        if present < len(discover(dataset, settings.max_image_pixels, settings.max_file_bytes).items):
            ingested = timed(INGEST, lambda: ingest_path(archive, dataset, progress=progress))
        status = index_status(archive)
        if status.version != bundle.version or status.not_indexed or status.vector_count != status.live_images:
            chosen = models if models is not None else ArchiveModels.load(bundle, torch.device(device))
            embedded = timed(EMBED, lambda: _embed(archive, chosen, batch_size, progress))
            config = BuildConfig(shape=ShapeConfig(side=bundle.resolution))
            timed(INDEX, lambda: build_index(archive, bundle.version, config, bundle=bundle.root.resolve()))
            status = index_status(archive)
    finally:
        archive.close()
    return PreparedArchive(status, ingested, embedded, seconds)


def _embed(archive: Archive, models: ArchiveModels, batch_size: int, progress: bool) -> EmbedReport:
    from generation.training import make_progress

    with make_progress(disable=not progress) as bar:
        task = bar.add_task("embed", total=None, status="S, C and E of every image")
        return embed_archive(archive, models, batch_size, on_batch=lambda done, total: bar.update(task, completed=done, total=total))


def embed_and_refresh(archive: Archive, models: ArchiveModels, batch_size: int = DEFAULT_BATCH_SIZE) -> RefreshReport:
    """Embed the images added since the active build, then refresh it (a new build, activated);
    refused (`IndexBuildRunningError`) while an `s2m index build` or refresh runs on the archive."""
    with index_build_lock(archive.engine, archive.settings.data_dir):
        embed_archive(archive, models, batch_size=batch_size)
        return refresh_index(archive, models.version)
