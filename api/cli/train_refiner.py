"""`s2m train refiner`."""

from __future__ import annotations

from api.cli.train import app  # noqa: F401
