"""Engine, sessions and schema revisions of the archive database.

`S2M_DATABASE_URL` picks SQLite (default, a file in the data dir) or PostgreSQL (psycopg2).
Alembic's script folder is located relative to the installed `migrations` package, so
`s2m db upgrade` works from any directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from formats.errors import InputError

SQLITE_BUSY_TIMEOUT_S = 30


class DatabaseOutOfDateError(InputError):
    """The database schema is behind (or ahead of) the code's latest migration."""


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets foreign keys on, WAL and a busy timeout, its folder created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


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


def head_revision() -> str:
    """The newest migration the code knows."""
    from alembic.script import ScriptDirectory

    import migrations

    script = ScriptDirectory(str(Path(migrations.__file__).parent))
    head = script.get_current_head()
    if head is None:
        raise DatabaseOutOfDateError("no migrations found in the installed package")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def ensure_current(engine: Engine) -> None:
    """Refuse to run against a database whose schema is not the code's latest revision."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        where = "empty (no schema)" if current is None else f"at revision {current}"
        raise DatabaseOutOfDateError(
            f"the archive database {engine.url.render_as_string(hide_password=True)} is {where}, "
            f"but this version of Sketch2MedI needs revision {head}: run `s2m db upgrade`"
        )
