"""The file-store lock: who may remove an image file, and when.

A stored file may be shared by rows of several processes (it is addressed by the sha256 of its
pixels), so "this batch created it" is no proof that nobody else needs it. The rule is:

- a writer (an ingest batch, a repair) holds the lock *shared* from before it writes a file
  until its rows are committed or rolled back;
- a remover (a failed batch cleaning up, `archive check --remove-orphans`, the `.tmp-*` sweep)
  takes it *exclusive*, so no write is in flight, then removes only files that no committed row
  points at, checked under the lock.

`index_build_lock` is the other lock of an archive: one index build or refresh at a time (two
would store the same vectors at once and one would die on the database's unique key).

PostgreSQL: a transaction-level advisory lock (`pg_advisory_xact_lock[_shared]`), so every
process that shares the database shares the lock, and a killed process releases it. SQLite: an
`flock` on `<data dir>/.files.lock` (SQLite archives are single-host by nature).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from formats.errors import InputError

LOCK_FILE = ".files.lock"
INDEX_LOCK_FILE = ".index.lock"
# Arbitrary, fixed 64-bit keys naming "the Sketch2MedI file store" and "... index" among other advisory locks.
ADVISORY_KEY = 0x53324D_46494C45
INDEX_ADVISORY_KEY = 0x53324D_494E4458


class IndexBuildRunningError(InputError):
    """A second index build or refresh while one runs on the same archive."""

    def __init__(self) -> None:
        super().__init__("another `s2m index build` or `s2m index refresh` is running on this archive: "
                         "wait for it to finish, then run this again")


@contextmanager
def index_build_lock(engine: Engine, data_dir: Path) -> Iterator[None]:
    """Held for a whole index build or refresh; a second one is refused at once (never waits for
    minutes of embedding). PostgreSQL: a session advisory lock on a connection held meanwhile (a
    killed process releases it); SQLite: an `flock` on `<data dir>/.index.lock`."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": INDEX_ADVISORY_KEY}).scalar():
                raise IndexBuildRunningError()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": INDEX_ADVISORY_KEY})
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / INDEX_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBuildRunningError() from None
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FileStoreLock:
    engine: Engine
    data_dir: Path

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held while files are written and their rows committed; many writers at once."""
        with self._hold(exclusive=False):
            yield

    @contextmanager
    def removing(self) -> Iterator[None]:
        """Held while files are removed; waits until no write is in flight."""
        with self._hold(exclusive=True):
            yield

    @contextmanager
    def _hold(self, exclusive: bool) -> Iterator[None]:
        if self.engine.dialect.name == "postgresql":
            function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            with self.engine.connect() as connection, connection.begin():
                connection.execute(text(f"SELECT {function}(:key)"), {"key": ADVISORY_KEY})
                yield
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock
