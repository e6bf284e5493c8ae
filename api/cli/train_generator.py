"""`s2m train generator`."""

from __future__ import annotations

from api.cli.train import app  # noqa: F401
