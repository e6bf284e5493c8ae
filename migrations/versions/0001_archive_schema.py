"""archive schema: images, annotations, sketches, embeddings, index builds, api keys, query log

Created 2026-11-25.
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.columns import created_at, id_type

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", id_type(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("stored_path", sa.String(255), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("case_ref", sa.String(64), nullable=True),
        sa.Column("patient_ref", sa.String(64), nullable=True),
        sa.Column("study_uid", sa.String(64), nullable=True),
        sa.Column("series_uid", sa.String(64), nullable=True),
        sa.Column("sop_uid", sa.String(64), nullable=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("diagnosis", sa.String(128), nullable=True),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        created_at(),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("source IN ('folder', 'phantom', 'dicom', 'dicomweb')", name=op.f("ck_images_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("sha256", name=op.f("uq_images_sha256")),
    )
    op.create_index("ix_images_diagnosis", "images", ["diagnosis"])
    op.create_index(op.f("ix_images_patient_ref"), "images", ["patient_ref"])
    op.create_index("ix_images_sop_uid", "images", ["sop_uid"])

    _image_table(
        "annotations",
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("mask_rle", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        checks=[sa.CheckConstraint("origin IN ('expert', 'model')", name=op.f("ck_annotations_origin"))],
        unique=("image_id", "origin", "model_version", "instance_id"),
    )
    op.create_index(op.f("ix_annotations_image_id"), "annotations", ["image_id"])

    _image_table(
        "sketches",
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        unique=("image_id", "model_version"),
    )
    op.create_index(op.f("ix_sketches_image_id"), "sketches", ["image_id"])

    _image_table(
        "embeddings",
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        checks=[sa.CheckConstraint("kind IN ('appearance', 'latent')", name=op.f("ck_embeddings_kind"))],
        unique=("image_id", "model_version", "kind"),
    )
    op.create_index("ix_embeddings_model_version_kind", "embeddings", ["model_version", "kind"])

    op.create_table(
        "index_builds",
        sa.Column("id", id_type(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("factory", sa.String(128), nullable=False),
        sa.Column("vector_count", sa.Integer(), nullable=False),
        sa.Column("file_path", sa.String(512), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        created_at(),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('building', 'ready', 'active', 'retired', 'failed')", name=op.f("ck_index_builds_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_index_builds")),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", id_type(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        created_at(),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )

    op.create_table(
        "query_log",
        sa.Column("id", id_type(), nullable=False),
        sa.Column("api_key_id", id_type(), nullable=True),
        created_at(),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("result_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_query_log_api_key_id_api_keys"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_query_log")),
    )
    op.create_index(op.f("ix_query_log_api_key_id"), "query_log", ["api_key_id"])
    op.create_index(op.f("ix_query_log_created_at"), "query_log", ["created_at"])


def _image_table(name: str, *columns: sa.Column, checks: Sequence[sa.CheckConstraint] = (),
                 unique: tuple[str, ...]) -> None:
    """A table of rows that belong to one image (annotations, sketches, embeddings): its own id, the
    image's id (its rows go with the image), `columns`, the creation time, then `checks`, the keys
    and the one unique constraint over `unique`."""
    op.create_table(
        name,
        sa.Column("id", id_type(), nullable=False),
        sa.Column("image_id", id_type(), nullable=False),
        *columns,
        created_at(),
        *checks,
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f(f"fk_{name}_image_id_images"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        sa.UniqueConstraint(*unique, name=op.f(f"uq_{name}_{'_'.join(unique)}")),
    )


def downgrade() -> None:
    for table in ("query_log", "api_keys", "index_builds", "embeddings", "sketches", "annotations", "images"):
        op.drop_table(table)
