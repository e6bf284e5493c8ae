"""the query log keeps the clinical signs a query applied (names, strengths, routes), so that reopening and refining a sign search keep them

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("query_log") as batch:
        batch.add_column(sa.Column("signs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("query_log") as batch:
        batch.drop_column("signs")
