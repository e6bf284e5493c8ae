"""the HTTP service's audit: query log rows keep their public id, caller address, build, scored results and timings; an access log

Created 2026-12-02.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import add_columns, created_at, drop_columns, id_type

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    add_columns(
        "query_log",
        sa.Column("uid", sa.String(32), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False, server_default="sketch"),
        sa.Column("build_id", id_type(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
        sa.Column("timings_ms", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )
    op.create_index("ix_query_log_uid", "query_log", ["uid"], unique=True)
    op.create_table(
        "access_log",
        sa.Column("id", id_type(), nullable=False),
        sa.Column("api_key_id", id_type(), nullable=True),
        created_at(),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("image_id", id_type(), nullable=True),
        sa.Column("query_uid", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_access_log_api_key_id_api_keys"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_log")),
    )
    op.create_index(op.f("ix_access_log_created_at"), "access_log", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_access_log_created_at"), table_name="access_log")
    op.drop_table("access_log")
    op.drop_index("ix_query_log_uid", table_name="query_log")
    drop_columns("query_log", "timings_ms", "results", "build_id", "kind", "client", "uid")
