"""Fixtures shared by the embedder (C) test modules."""

from __future__ import annotations

import pytest

from generation.moco import EmbedderConfig


@pytest.fixture(scope="session")
def tiny_phantoms(tmp_path_factory):
    """80 labelled phantoms at the tiny preset's side: enough for a probe bank and queries."""
    from phantoms.dataset import generate_dataset

    side = EmbedderConfig.for_preset("tiny").resolution
    return generate_dataset(tmp_path_factory.mktemp("phantoms") / "ds", count=80, size=side, seed=5, workers=1)
