"""Column types and column steps that several migrations share, written once.

A migration must create the same schema every time it runs, so these helpers are frozen like the
migrations that call them: a new shape gets a new helper, never an edit here. (Each version file
names only `revision` and `down_revision`: Alembic takes a missing `branch_labels` or
`depends_on` for None, and reads nothing else from the file's header.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def id_type() -> sa.types.TypeEngine:
    """Surrogate keys and references to them: BIGINT on PostgreSQL, INTEGER on SQLite (its rowid alias)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def created_at() -> sa.Column:
    """When a row was written (time zone aware, required)."""
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def add_columns(table: str, *columns: sa.Column) -> None:
    """Add `columns` to `table` in one batch (a single table copy where SQLite needs one)."""
    with op.batch_alter_table(table) as batch:
        for column in columns:
            batch.add_column(column)


def drop_columns(table: str, *names: str) -> None:
    """Drop the columns `names` from `table` in one batch, in the order given."""
    with op.batch_alter_table(table) as batch:
        for name in names:
            batch.drop_column(name)
