"""`s2m train embedder`."""

from __future__ import annotations

from api.cli.train import app  # noqa: F401
