"""the query log keeps the clinical signs a query applied (names, strengths, routes), so that reading it back, refining and reopening a sign search keep them

Created 2026-12-06.
"""

from __future__ import annotations

import sqlalchemy as sa

from migrations.columns import add_columns, drop_columns

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    add_columns("query_log", sa.Column("signs", sa.JSON(), nullable=True))


def downgrade() -> None:
    drop_columns("query_log", "signs")
