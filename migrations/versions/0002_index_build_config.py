"""index builds record their channel transforms, calibration and weights

Created 2026-12-01.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import add_columns, drop_columns

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    add_columns("index_builds", sa.Column("config", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    drop_columns("index_builds", "config")
