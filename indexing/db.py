"""Engine, sessions and schema revisions of the archive database.

`S2M_DATABASE_URL` picks SQLite (default, a file in the data dir) or PostgreSQL (psycopg2).
Alembic's script folder is located relative to the installed `migrations` package, so
`s2m db upgrade` works from any directory.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from formats.errors import InputError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30
SQLITE_FILE_KEY = "s2m_sqlite_file"  # a pooled connection's (device, inode) of the file it opened
SUPPORTED_SCHEMES = "sqlite:///PATH or postgresql+psycopg2://USER@HOST:PORT/DATABASE"


class DatabaseOutOfDateError(InputError):
    """The database schema is behind (or ahead of) the code's latest migration."""


class DatabaseUnavailableError(InputError):
    """The database URL is unusable or the database cannot be reached (or written, when a command writes)."""


class NoDatabaseFileError(DatabaseUnavailableError):
    """An SQLite archive whose file does not exist (yet, or any more): only the migrations create it."""


def _sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL, plain (`sqlite:///PATH`) or as a URI (`sqlite:///file:PATH?mode=rw&uri=true`)."""
    parsed = make_url(url)
    if not parsed.database or parsed.database == ":memory:" or parsed.query.get("mode") == "memory":
        return None
    return Path(parsed.database.removeprefix("file:"))


def make_engine(url: str, read_only: bool = False, create: bool = False) -> Engine:
    """An engine for `url`. Bound parameters are never rendered into errors or logs (they are row values).

    SQLite gets foreign keys on, WAL and a busy timeout. Only `create` (the migrations: `s2m db
    upgrade`, `Archive.create`) makes the file and its folder; otherwise the file is opened with
    `mode=rw`, so a service whose file went away never makes a new empty one, and a connection is
    dropped (and a new one opened) when the file at the path is no longer the one it opened
    (`_follow_the_file`). `read_only` opens the file with `mode=ro`, runs no write pragma and
    creates nothing, so a read-only file can be inspected.
    """
    scheme = url.split(":", 1)[0] if ":" in url else url
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise DatabaseUnavailableError(
            f"S2M_DATABASE_URL has an unknown or malformed scheme {scheme!r}; use {SUPPORTED_SCHEMES}"
        ) from error
    try:  # a known dialect whose driver is not installed (postgresql:// means psycopg 3 to SQLAlchemy)
        dialect.import_dbapi()
    except ImportError as error:
        raise DatabaseUnavailableError(
            f"S2M_DATABASE_URL's scheme {scheme!r} needs a database driver that is not installed; use {SUPPORTED_SCHEMES}"
        ) from error
    if backend != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    path = _sqlite_path(url)
    if path is not None and not create and not path.is_file():
        raise NoDatabaseFileError(f"there is no archive database at {path}: run `s2m db upgrade` to create it")
    if read_only and path is not None:
        # In a folder nobody may write, no writer can exist and SQLite could not create the WAL's
        # shared-memory file a reader needs: open the file as immutable there.
        wal = path.with_name(path.name + "-wal")
        frozen = not os.access(path.parent, os.W_OK) and not (wal.exists() and wal.stat().st_size)
        mode = "immutable=1" if frozen else "mode=ro"
        return create_engine(
            f"sqlite:///file:{path}?{mode}&uri=true", connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, hide_parameters=True
        )
    if path is not None and create:
        path.parent.mkdir(parents=True, exist_ok=True)
    target = f"sqlite:///file:{path}?mode=rw&uri=true" if path is not None and not create else url
    engine = create_engine(target, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    if path is not None and not create:
        _follow_the_file(engine, path)
    return engine


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _follow_the_file(engine: Engine, path: Path) -> None:
    """Drop a pooled SQLite connection whose file is no longer the one at `path` (moved away,
    removed, replaced), so the next request fails cleanly while it is gone (503, "not ready") and
    works again, on a new connection, once the file is back; said once in the log per disappearance."""
    reported = threading.Event()

    @event.listens_for(engine, "connect")
    def _remember(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info[SQLITE_FILE_KEY] = _file_identity(path)
        reported.clear()

    @event.listens_for(engine, "checkout")
    def _same_file(_dbapi_connection, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        if _file_identity(path) != record.info.get(SQLITE_FILE_KEY):
            if not reported.is_set():
                reported.set()
                log.warning("the archive database file %s is gone or was replaced; reconnecting to the file at that path", path)
            raise DisconnectionError("the archive database file is not the one this connection opened")


def ensure_writable(engine: Engine) -> None:
    """Refuse a command that writes when the SQLite file cannot be written (say so before any work)."""
    if engine.dialect.name != "sqlite":
        return
    path = _sqlite_path(engine.url.render_as_string())
    if path is not None and path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        raise DatabaseUnavailableError(
            f"the archive database {path} is read-only; this command writes to it "
            "(read-only commands such as `s2m archive stats` and `s2m db status` still work)"
        )


def describe(engine: Engine) -> str:
    """The database as a user names it: the SQLite file, or the URL without its password."""
    if engine.dialect.name == "sqlite" and engine.url.database:
        return engine.url.database.removeprefix("file:")
    return engine.url.render_as_string(hide_password=True)


def unreachable(engine: Engine, error: OperationalError) -> DatabaseUnavailableError:
    """One sentence for a database that refused the connection (the driver's reason, never a row value)."""
    lines = [line.strip() for line in str(error.orig).splitlines() if line.strip()]
    reason = lines[0] if lines else type(error.orig).__name__
    reason = reason.split(" failed: ", 1)[-1].replace("FATAL:", "").strip()
    reason = " ".join(reason.split())
    return DatabaseUnavailableError(f"cannot use the archive database {describe(engine)}: {reason}")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _alembic_config(engine: Engine):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["engine"] = engine
    return config


def _script():  # type: ignore[no-untyped-def]
    from alembic.script import ScriptDirectory

    import migrations

    return ScriptDirectory(str(Path(migrations.__file__).parent))


def head_revision() -> str:
    """The newest migration the code knows."""
    head = _script().get_current_head()
    if head is None:
        raise DatabaseOutOfDateError("no migrations found in the installed package")
    return head


def known_revision(engine: Engine) -> str | None:
    """The database's revision; refuses one this code does not know (a newer version migrated it)."""
    current = current_revision(engine)
    if current is not None and not any(script.revision == current for script in _script().walk_revisions()):
        raise DatabaseOutOfDateError(
            f"the archive database {describe(engine)} is at revision {current}, "
            f"newer than this version of Sketch2MedI knows (its latest is {head_revision()}): "
            "a newer Sketch2MedI migrated it, so use that version (do not downgrade it with this one)"
        )
    return current


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as error:
        raise unreachable(engine, error) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    known_revision(engine)
    command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    known_revision(engine)
    command.downgrade(_alembic_config(engine), revision)


def ensure_current(engine: Engine) -> None:
    """Refuse to run against a database whose schema is not the code's latest revision."""
    current = known_revision(engine)
    head = head_revision()
    if current != head:
        where = "empty (no schema)" if current is None else f"at revision {current}"
        raise DatabaseOutOfDateError(
            f"the archive database {describe(engine)} is {where}, "
            f"but this version of Sketch2MedI needs revision {head}: run `s2m db upgrade`"
        )
