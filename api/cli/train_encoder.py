"""`s2m train encoder`."""

from __future__ import annotations

from api.cli.train import app  # noqa: F401
