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


@pytest.fixture(scope="session")
def signs_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped bundle with sign directions learned from 80 labelled 64-px phantoms (~30 s):
    its version is the shipped one, so it serves the builds of the archives above."""
    import shutil

    from generation.bundle import Bundle
    from generation.sign_training import SignTrainConfig, train_signs
    from phantoms.dataset import generate_dataset

    root = tmp_path_factory.mktemp("signs")
    labelled = generate_dataset(root / "labelled", 80, SIDE, 7, workers=1)
    bundle = Path(shutil.copytree(SHIPPED_BUNDLE, root / "bundle"))
    config = SignTrainConfig(probe_images=80, w_samples=200, check_samples=8, check_strengths=5, validation_samples=8)
    train_signs(Bundle.open(bundle), Path(labelled), config).save(bundle)
    return bundle


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
