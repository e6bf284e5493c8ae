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
from indexing.ingest.run import ingest_path
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


@pytest.fixture
def embedded(archive: Archive, phantom_archive: Path, archive_models: ArchiveModels) -> Archive:  # noqa: F811
    """The archive with the 16 phantoms ingested and their vectors stored."""
    ingest_path(archive, phantom_archive, None, None, progress=False)
    embed_archive(archive, archive_models, batch_size=BATCH)
    return archive


@pytest.fixture(scope="session")
def pix2pix_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle holding an untrained pix2pix generator at the small preset's side (the shipped bundle's)."""
    from generation.bundle import PIX2PIX, save_network
    from generation.pix2pix import Pix2PixConfig, UNetGenerator

    config = Pix2PixConfig.for_preset("small")
    torch.manual_seed(0)
    return save_network(tmp_path_factory.mktemp("pix2pix"), PIX2PIX, UNetGenerator(config).eval(), config).parent


@pytest.fixture(scope="session")
def retrieval_report(tmp_path_factory: pytest.TempPathFactory, pix2pix_small: Path) -> Path:
    """`s2m eval retrieval` on a 24-phantom archive, 4 queries per style, with the pix2pix + C row and
    H run 2 steps (of its 3): its JSON."""
    from typer.testing import CliRunner

    from api.cli import app

    root = tmp_path_factory.mktemp("eval-retrieval")
    report = root / "report.json"
    result = CliRunner().invoke(app, ["eval", "retrieval", "--archive", "24", "--queries", "4", "--size", "64",
                                      "--canvases", "64,512", "--steps", "2", "--work", str(root / "work"),
                                      "--pix2pix", str(pix2pix_small), "--report", str(report)])
    assert result.exit_code == 0, result.output
    return report
