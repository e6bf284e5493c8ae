"""each sketch search's pictures (canonical sketch, x_0 .. x_T) in the database, so every replica serves their URLs

Created 2026-12-06.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import created_at, id_type

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "query_pictures",
        sa.Column("query_id", id_type(), nullable=False),
        created_at(),
        sa.Column("pictures", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["query_id"], ["query_log.id"], name=op.f("fk_query_pictures_query_id_query_log"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("query_id", name=op.f("pk_query_pictures")),
    )
    op.create_index(op.f("ix_query_pictures_created_at"), "query_pictures", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_query_pictures_created_at"), table_name="query_pictures")
    op.drop_table("query_pictures")
