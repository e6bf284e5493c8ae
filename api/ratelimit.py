"""Each API key's rate limit: a token bucket of `burst` requests, refilled at `per_minute`.

Where the bucket lives depends on the database, because that is what tells how many processes serve:
- PostgreSQL (replicas behind a proxy, or `s2m serve --workers N`): one row per key in
  `rate_limit_buckets`, taken from with one atomic `UPDATE ... RETURNING` on the database's clock,
  so every replica draws on the same bucket and N replicas together allow the configured rate.
- SQLite (one host, normally one process): the bucket is in the process's memory. With
  `s2m serve --workers N` on SQLite each worker has its own bucket, so together they allow N times
  `per_minute` and N times `burst`; a deployment that needs one limit runs on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
_AVAILABLE = f"LEAST(:burst, tokens + GREATEST(0, {_NOW} - refilled_at) * :rate)"
_CREATE = text(f"INSERT INTO rate_limit_buckets (api_key_id, tokens, refilled_at) VALUES (:key, :burst, {_NOW}) "
               "ON CONFLICT (api_key_id) DO NOTHING")
# The row lock serialises concurrent takers; each re-evaluates the WHERE on the row the previous one left.
_TAKE = text(f"UPDATE rate_limit_buckets SET tokens = {_AVAILABLE} - 1, refilled_at = GREATEST(refilled_at, {_NOW}) "
             f"WHERE api_key_id = :key AND {_AVAILABLE} >= 1 RETURNING tokens")
_PEEK = text(f"SELECT {_AVAILABLE} FROM rate_limit_buckets WHERE api_key_id = :key")


class RateLimiter(Protocol):
    def take(self, key_id: int) -> float:
        """0 if the key may go ahead (one token taken), else the seconds until it may."""


class LocalTokenBuckets:
    """The buckets in this process's memory (SQLite: one process)."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate, self.burst = per_minute / 60.0, float(burst)
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: int) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / self.rate


class SharedTokenBuckets:
    """The buckets in PostgreSQL, shared by every process that serves the same database."""

    def __init__(self, per_minute: int, burst: int, engine: Callable[[], Engine]) -> None:
        self.rate, self.burst = per_minute / 60.0, float(burst)
        self._engine = engine  # the service's archive engine, opened lazily (the database may be down at start)

    def take(self, key_id: int) -> float:
        values = {"key": key_id, "burst": self.burst, "rate": self.rate}
        with self._engine().begin() as connection:
            connection.execute(_CREATE, values)
            if connection.execute(_TAKE, values).first() is not None:
                return 0.0
            available = float(connection.execute(_PEEK, values).scalar_one())
        return max(0.0, 1 - available) / self.rate


def rate_limiter(database_url: str, per_minute: int, burst: int, engine: Callable[[], Engine]) -> RateLimiter:
    """Shared buckets on PostgreSQL, this process's own on SQLite (see the module's docstring)."""
    if make_url(database_url).get_backend_name() == "postgresql":
        return SharedTokenBuckets(per_minute, burst, engine)
    return LocalTokenBuckets(per_minute, burst)
