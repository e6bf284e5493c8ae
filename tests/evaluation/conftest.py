"""Fixtures of the evaluation tests: an untrained pix2pix bundle and one tiny `s2m eval retrieval` run
(the shipped `models/small`, 64-px phantoms), shared by the tests that read its JSON."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


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
    """`s2m eval retrieval` on a 24-phantom archive, 4 queries per style, with the pix2pix + C row, the
    relevance-feedback rounds and H run 2 steps (of its 3): its JSON."""
    from typer.testing import CliRunner

    from api.cli import app

    root = tmp_path_factory.mktemp("eval-retrieval")
    report = root / "report.json"
    result = CliRunner().invoke(app, ["eval", "retrieval", "--archive", "24", "--queries", "4", "--size", "64",
                                      "--canvases", "64,512", "--steps", "2", "--work", str(root / "work"),
                                      "--pix2pix", str(pix2pix_small), "--feedback", "--report", str(report)])
    assert result.exit_code == 0, result.output
    return report
