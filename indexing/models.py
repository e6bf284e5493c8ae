"""The archive schema as typed SQLAlchemy 2 ORM classes (one Alembic revision per change).

Every returned case is an `Image` row; what the models derive from it (sketches, embeddings,
masks) hangs off it by `image_id`. No patient names or birth dates exist anywhere in the schema:
`patient_ref` is a keyed pseudonym.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids (FAISS ids are int64).
Id = BigInteger().with_variant(Integer(), "sqlite")

SOURCES = ("folder", "phantom", "dicom", "dicomweb")
EMBEDDING_KINDS = ("appearance", "latent")
ANNOTATION_ORIGINS = ("expert", "model")
BUILD_STATUSES = ("building", "ready", "active", "retired", "failed")
SCOPES = ("search", "admin")

UID_LENGTH = 64  # DICOM UIDs are at most 64 characters
SHA256_HEX = 64


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the archive; pass a timezone-aware one")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Base(DeclarativeBase):
    # Deterministic constraint names, so migrations can address (and drop) them on every backend.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Image(Base):
    """One archive photograph: its stored pixels, DICOM identity and findings."""

    __tablename__ = "images"
    __table_args__ = (
        CheckConstraint(_in("source", SOURCES), name="source"),
        Index("ix_images_sop_uid", "sop_uid"),
        Index("ix_images_diagnosis", "diagnosis"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    stored_path: Mapped[str] = mapped_column(String(255))
    original_name: Mapped[str | None] = mapped_column(String(128))  # base name, only if screened (ingest/names.py)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    case_ref: Mapped[str | None] = mapped_column(String(64))
    patient_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    study_uid: Mapped[str | None] = mapped_column(String(UID_LENGTH))
    series_uid: Mapped[str | None] = mapped_column(String(UID_LENGTH))
    sop_uid: Mapped[str | None] = mapped_column(String(UID_LENGTH))
    acquired_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    diagnosis: Mapped[str | None] = mapped_column(String(128))
    findings: Mapped[list[str]] = mapped_column(JSON, default=list)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    annotations: Mapped[list["Annotation"]] = relationship(back_populates="image", cascade="all, delete-orphan")


class Annotation(Base):
    """One instance mask (COCO RLE) of an image, by an expert or by a model version."""

    __tablename__ = "annotations"
    __table_args__ = (
        CheckConstraint(_in("origin", ANNOTATION_ORIGINS), name="origin"),
        UniqueConstraint("image_id", "origin", "model_version", "instance_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    category_id: Mapped[int] = mapped_column(Integer)
    instance_id: Mapped[int] = mapped_column(Integer)
    mask_rle: Mapped[dict[str, Any]] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)

    image: Mapped[Image] = relationship(back_populates="annotations")


class Sketch(Base):
    """The synthesized sketch of an image (PNG bytes) for one synthesizer model version."""

    __tablename__ = "sketches"
    __table_args__ = (UniqueConstraint("image_id", "model_version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    png: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class Embedding(Base):
    """A float32 vector of an image (appearance C(x) or latent w), so an index can always be rebuilt."""

    __tablename__ = "embeddings"
    __table_args__ = (
        CheckConstraint(_in("kind", EMBEDDING_KINDS), name="kind"),
        UniqueConstraint("image_id", "model_version", "kind"),
        Index("ix_embeddings_model_version_kind", "model_version", "kind"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class IndexBuild(Base):
    """One FAISS index file built from the embeddings; at most one is `active` at a time."""

    __tablename__ = "index_builds"
    __table_args__ = (CheckConstraint(_in("status", BUILD_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64))
    factory: Mapped[str] = mapped_column(String(128))
    vector_count: Mapped[int] = mapped_column(Integer)
    file_path: Mapped[str] = mapped_column(String(512))
    checksum: Mapped[str] = mapped_column(String(SHA256_HEX))
    status: Mapped[str] = mapped_column(String(16), default="building")
    # channel transforms file and checksum, calibration scales, weights, dims, shape config
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ApiKey(Base):
    """A client's key: the public `prefix` finds the row, only a hash of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class RateLimitBucket(Base):
    """An API key's token bucket on PostgreSQL, shared by every replica (`api/ratelimit.py`); unused on SQLite."""

    __tablename__ = "rate_limit_buckets"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    refilled_at: Mapped[float] = mapped_column(Float)  # the database's clock, seconds since the epoch


class QueryLog(Base):
    """Append-only audit of searches: who, from where, when, k, latency and which cases came back
    with their scores (no pixels, no patient identifier); `uid` is the id the API hands out."""

    __tablename__ = "query_log"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now, index=True)
    k: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result_ids: Mapped[list[int]] = mapped_column(JSON)
    uid: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)
    client: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="sketch")  # "sketch", "preview", "example", "refine" or "reopen"
    build_id: Mapped[int | None] = mapped_column(Id)
    # [{"image_id", "score", "channels": {name: score}}] in rank order
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    timings_ms: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    parent_uid: Mapped[str | None] = mapped_column(String(32))  # the query a refine or a reopen started from
    # a refine's marks and what they made: {"like", "unlike", "exclude", "weights"} (ids and numbers only)
    feedback: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the clinical signs applied, [{"sign", "strength", "routes", "w_shift", "appearance_shift"}]; a refinement
    # or reopening keeps its first search's (names and numbers only)
    signs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class QueryVectors(Base):
    """A query's own channel vectors (query side, one bundle version), kept so that it can be refined
    and reopened without its sketch: float32 arrays in one compressed npz, no pixels."""

    __tablename__ = "query_vectors"

    query_id: Mapped[int] = mapped_column(ForeignKey("query_log.id", ondelete="CASCADE"), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64))
    vectors: Mapped[bytes] = mapped_column(LargeBinary)


class QueryPictures(Base):
    """A sketch search's canonical sketch and generated pictures x_0 .. x_T (uint8 arrays in one
    compressed npz), shared by every replica and swept by age and count (`indexing/pictures.py`)."""

    __tablename__ = "query_pictures"

    query_id: Mapped[int] = mapped_column(ForeignKey("query_log.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now, index=True)
    pictures: Mapped[bytes] = mapped_column(LargeBinary)


class SavedSearch(Base):
    """A search its key kept under a name; only that key sees it."""

    __tablename__ = "saved_searches"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("query_log.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class IndexReference(Base):
    """A build's reference distribution: raw channel scores of random archive pairs (float32 [M, 3] as
    .npy bytes), computed when the build is made; a hit's percentile is its place among them."""

    __tablename__ = "index_references"

    build_id: Mapped[int] = mapped_column(ForeignKey("index_builds.id", ondelete="CASCADE"), primary_key=True)
    pairs: Mapped[int] = mapped_column(Integer)
    scores: Mapped[bytes] = mapped_column(LargeBinary)


class AccessLog(Base):
    """Append-only audit of archive reads other than searches: who fetched which case's data, when."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now, index=True)
    client: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    image_id: Mapped[int | None] = mapped_column(Id)
    query_uid: Mapped[str | None] = mapped_column(String(32))
