"""`s2m phantom sketch` and `s2m phantom preview`: sketches of a phantom dataset folder."""

from __future__ import annotations

from api.cli.phantom import app  # noqa: F401
