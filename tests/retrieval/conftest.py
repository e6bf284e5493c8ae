"""Fixtures of the index and engine tests: a small phantom archive embedded with the shipped bundle.

S must find instances for the shape and latent channels to mean anything, and a randomly
initialised tiny S finds none, so these tests use the shipped `models/small` (trained, 64 px)
on 64-px phantoms. The archive fixtures run on SQLite and on PostgreSQL (tests/indexing).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generation.presets import SHIPPED_BUNDLE
from indexing.archive import Archive
from indexing.fused_index import build_index
from indexing.ingest.run import ingest_path
from indexing.settings import Settings
from indexing.vectors import ArchiveModels, embed_archive
from tests.indexing.conftest import archive, database_url, postgres_database, settings  # noqa: F401 (fixtures)

CASES = 16
SIDE = 64
SEED = 21
BATCH = 16


@pytest.fixture(scope="session")
def phantom_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 phantoms (with 4 more to add later: `extra/`) at the shipped bundle's side."""
    from phantoms.dataset import generate_dataset

    root = tmp_path_factory.mktemp("archive")
    generate_dataset(root / "extra", 4, SIDE, SEED, workers=1, start=CASES)
    return generate_dataset(root / "base", CASES, SIDE, SEED, workers=1)


@pytest.fixture(scope="session")
def archive_models() -> ArchiveModels:
    return ArchiveModels.load(SHIPPED_BUNDLE, torch.device("cpu"))


def indexed_archive(settings: Settings, dataset: Path, models: ArchiveModels) -> None:
    """A new archive of `settings` with the phantoms of `dataset` ingested, embedded and indexed."""
    archive = Archive.create(settings)
    try:
        ingest_path(archive, dataset, None, None, progress=False)
        embed_archive(archive, models, batch_size=BATCH)
        build_index(archive, models.version)
    finally:
        archive.close()


@pytest.fixture
def embedded(archive: Archive, phantom_archive: Path, archive_models: ArchiveModels) -> Archive:  # noqa: F811
    """The archive with the 16 phantoms ingested and their vectors stored."""
    ingest_path(archive, phantom_archive, None, None, progress=False)
    embed_archive(archive, archive_models, batch_size=BATCH)
    return archive
