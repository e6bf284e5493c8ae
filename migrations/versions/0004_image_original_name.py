"""images keep their original base file name where it is known not to identify anyone (indexing/ingest/names.py)

Created 2026-12-02.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import add_columns, drop_columns

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    add_columns("images", sa.Column("original_name", sa.String(128), nullable=True))


def downgrade() -> None:
    drop_columns("images", "original_name")
