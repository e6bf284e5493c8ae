"""An opened archive: settings, engine, sessions and file store, checked against the latest migration."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from indexing.db import ensure_current, make_engine, make_session_factory
from indexing.filestore import FileStore
from indexing.settings import Settings


@dataclass(frozen=True)
class Archive:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    files: FileStore

    @classmethod
    def open(cls, settings: Settings) -> "Archive":
        """Open the archive; raises DatabaseOutOfDateError unless the schema is at the latest revision."""
        engine = make_engine(settings.database_url)
        try:
            ensure_current(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(settings, engine, make_session_factory(engine), FileStore(settings.data_dir))

    def close(self) -> None:
        self.engine.dispose()
