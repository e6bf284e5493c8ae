"""the clinician's loop: refinements linked to their parent query with their marks, each query's own vectors (to refine and reopen it), saved searches per key, and each index build's reference score distribution

Created 2026-12-06.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import add_columns, created_at, drop_columns, id_type

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    add_columns("query_log", sa.Column("parent_uid", sa.String(32), nullable=True),
                sa.Column("feedback", sa.JSON(), nullable=True))
    op.create_table(
        "query_vectors",
        sa.Column("query_id", id_type(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("vectors", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["query_id"], ["query_log.id"], name=op.f("fk_query_vectors_query_id_query_log"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("query_id", name=op.f("pk_query_vectors")),
    )
    op.create_table(
        "saved_searches",
        sa.Column("id", id_type(), nullable=False),
        sa.Column("api_key_id", id_type(), nullable=False),
        sa.Column("query_id", id_type(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        created_at(),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_saved_searches_api_key_id_api_keys"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["query_id"], ["query_log.id"], name=op.f("fk_saved_searches_query_id_query_log"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_searches")),
    )
    op.create_index(op.f("ix_saved_searches_api_key_id"), "saved_searches", ["api_key_id"])
    op.create_table(
        "index_references",
        sa.Column("build_id", id_type(), nullable=False),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.Column("scores", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["build_id"], ["index_builds.id"], name=op.f("fk_index_references_build_id_index_builds"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("build_id", name=op.f("pk_index_references")),
    )


def downgrade() -> None:
    op.drop_table("index_references")
    op.drop_index(op.f("ix_saved_searches_api_key_id"), table_name="saved_searches")
    op.drop_table("saved_searches")
    op.drop_table("query_vectors")
    drop_columns("query_log", "feedback", "parent_uid")
