"""Alembic environment: runs against the engine `indexing.db` hands in (never reads alembic.ini)."""

from __future__ import annotations

from alembic import context

from indexing.models import Base

config = context.config


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        raise RuntimeError("run migrations through `s2m db upgrade` (indexing.db), which supplies the engine")
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
