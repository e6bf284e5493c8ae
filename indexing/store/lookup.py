"""Limits every store module shares: how many values one `IN (...)` list holds, and the largest row id."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

LOOKUP_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit
MAX_ROW_ID = 2**63 - 1  # a row id is a signed 64-bit integer on every backend; a larger one names no row


def chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    """`values` in slices of at most LOOKUP_CHUNK, one `IN (...)` list each."""
    for start in range(0, len(values), LOOKUP_CHUNK):
        yield values[start : start + LOOKUP_CHUNK]
