"""An opened archive: settings, engine, sessions, file store and its lock, checked against the latest migration."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from indexing.db import (
    DatabaseUnavailableError,
    ensure_current,
    ensure_writable,
    known_revision,
    make_engine,
    make_session_factory,
    upgrade,
)
from indexing.filestore import FileStore
from indexing.locks import FileStoreLock
from indexing.models import Image
from indexing.settings import Settings, SettingsError


class PseudonymKeyMissingError(SettingsError):
    """The archive has rows keyed by a pseudonym key that is no longer there."""


@dataclass(frozen=True)
class Archive:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    files: FileStore
    lock: FileStoreLock

    @classmethod
    def open(cls, settings: Settings, read_only: bool = False, any_known_revision: bool = False) -> "Archive":
        """Open the archive; raises DatabaseOutOfDateError unless the schema is at the latest revision
        (`any_known_revision`: or an older one, for a backup taken before `s2m db upgrade`).

        `read_only` (for commands that only look) writes nothing: no pragma, no folder, no key.
        A writing archive refuses a read-only database file or data dir up front."""
        engine = make_engine(settings.database_url, read_only=read_only)
        try:
            if any_known_revision:
                known_revision(engine)
            else:
                ensure_current(engine)
            if not read_only:
                ensure_writable(engine)
                data_dir = settings.data_dir
                if data_dir.exists() and not os.access(data_dir, os.W_OK | os.X_OK):
                    raise DatabaseUnavailableError(f"the data dir {data_dir} is read-only; this command writes to it")
        except BaseException:
            engine.dispose()
            raise
        return cls(settings, engine, make_session_factory(engine), FileStore(settings.data_dir), FileStoreLock(engine, settings.data_dir))

    @classmethod
    def create(cls, settings: Settings) -> "Archive":
        """Bring the database to the latest schema revision, then open it: for the jobs that set up an
        archive of their own (the demo, the evaluations, the benchmarks); `s2m db upgrade` is the admin's."""
        engine = make_engine(settings.database_url, create=True)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return cls.open(settings)

    def pseudonym_key(self) -> bytes:
        """The key of the patient pseudonyms. A new one is made only for an empty archive: with rows,
        a lost key would silently give every patient new pseudonyms, so that is refused."""
        settings = self.settings
        if settings.pseudonym_key or settings.pseudonym_key_path.exists():
            return settings.resolve_pseudonym_key()
        with self.sessions() as session:
            images = session.scalar(select(func.count()).select_from(Image)) or 0
        if images:
            raise PseudonymKeyMissingError(
                f"the archive holds {images} images but its pseudonym key {settings.pseudonym_key_path} is missing: "
                "restore that file from a backup of the data dir (or set S2M_PSEUDONYM_KEY to the key), "
                "since a new key would give every patient new pseudonyms"
            )
        return settings.resolve_pseudonym_key()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
