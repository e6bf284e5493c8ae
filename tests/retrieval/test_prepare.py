"""`indexing.prepare`: a dataset folder made searchable in one call that a second call only checks,
and the service's embed-then-refresh (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from generation.bundle import Bundle
from generation.presets import SHIPPED_BUNDLE
from indexing.archive import Archive
from indexing.fused_index import index_status
from indexing.ingest.run import ingest_path
from indexing.prepare import EMBED, INDEX, INGEST, embed_and_refresh, prepare_archive
from indexing.settings import Settings
from indexing.vectors import ArchiveModels
from tests.retrieval.conftest import BATCH, CASES


def test_prepare_ingests_embeds_and_indexes_once_then_only_checks(settings: Settings, phantom_archive: Path,
                                                                  archive_models: ArchiveModels) -> None:
    bundle = Bundle.open(SHIPPED_BUNDLE)
    heard = []
    first = prepare_archive(settings, phantom_archive, bundle, models=archive_models, batch_size=BATCH,
                            on_step=lambda step, seconds, report: heard.append(step))
    assert heard == [INGEST, EMBED, INDEX] and set(first.seconds) == set(heard)
    assert first.ingested.added == CASES and first.embedded.embedded == CASES
    assert first.status.version == bundle.version and first.status.vector_count == CASES and first.status.not_indexed == 0

    again = prepare_archive(settings, phantom_archive, bundle, models=archive_models,
                            on_step=lambda step, seconds, report: heard.append(step))
    assert heard == [INGEST, EMBED, INDEX]  # nothing ran twice
    assert again.ingested is None and again.embedded is None and again.seconds == {}
    assert again.status.build_id == first.status.build_id


def test_embed_and_refresh_makes_new_images_searchable_in_a_new_build(settings: Settings, phantom_archive: Path,
                                                                       archive_models: ArchiveModels) -> None:
    first = prepare_archive(settings, phantom_archive, Bundle.open(SHIPPED_BUNDLE), models=archive_models, batch_size=BATCH)
    archive = Archive.open(settings)
    try:
        assert ingest_path(archive, phantom_archive.parent / "extra").added == 4
        report = embed_and_refresh(archive, archive_models, batch_size=BATCH)
        status = index_status(archive)
    finally:
        archive.close()
    assert report.added == 4 and report.removed == 0 and not report.rebuilt
    assert status.build_id == report.build.id != first.status.build_id
    assert status.vector_count == status.live_images == CASES + 4 and status.not_indexed == 0
