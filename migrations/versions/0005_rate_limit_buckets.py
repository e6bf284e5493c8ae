"""each API key's token bucket in the database, so replicas on PostgreSQL share one rate limit

Created 2026-12-06.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import id_type

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "rate_limit_buckets",
        sa.Column("api_key_id", id_type(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_rate_limit_buckets_api_key_id_api_keys"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("api_key_id", name=op.f("pk_rate_limit_buckets")),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_buckets")
