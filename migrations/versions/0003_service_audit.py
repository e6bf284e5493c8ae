"""the HTTP service's audit: query log rows keep their public id, caller address, build, scored results and timings; an access log

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("query_log") as batch:
        batch.add_column(sa.Column("uid", sa.String(32), nullable=True))
        batch.add_column(sa.Column("client", sa.String(64), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="sketch"))
        batch.add_column(sa.Column("build_id", _id(), nullable=True))
        batch.add_column(sa.Column("results", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("timings_ms", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch.create_index("ix_query_log_uid", ["uid"], unique=True)
    op.create_table(
        "access_log",
        sa.Column("id", _id(), nullable=False),
        sa.Column("api_key_id", _id(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("image_id", _id(), nullable=True),
        sa.Column("query_uid", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_access_log_api_key_id_api_keys"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_log")),
    )
    op.create_index(op.f("ix_access_log_created_at"), "access_log", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_access_log_created_at"), table_name="access_log")
    op.drop_table("access_log")
    with op.batch_alter_table("query_log") as batch:
        batch.drop_index("ix_query_log_uid")
        for column in ("timings_ms", "results", "build_id", "kind", "client", "uid"):
            batch.drop_column(column)
