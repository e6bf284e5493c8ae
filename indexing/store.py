"""The archive's repository: typed functions over a Session, used by ingest, the index builder and the API.

Functions never commit; the caller owns the transaction (one per ingest batch, one per request).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from indexing.cases import CaseRecord
from indexing.filestore import FileStore
from indexing.models import (
    ANNOTATION_ORIGINS,
    EMBEDDING_KINDS,
    SCOPES,
    AccessLog,
    Annotation,
    ApiKey,
    Embedding,
    Image,
    IndexBuild,
    QueryLog,
    Sketch,
    utc_now,
)

API_KEY_PREFIX_BYTES = 6
API_KEY_SECRET_BYTES = 32
API_KEY_MARK = "s2m"
VECTOR_DTYPE = np.float32
LOOKUP_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit
MAX_ROW_ID = 2**63 - 1  # a row id is a signed 64-bit integer on every backend; a larger one names no row


@dataclass(frozen=True)
class NewImage:
    """What ingest knows about one image before it has a row: its file, its case and its labels."""

    sha256: str
    stored_path: str
    width: int
    height: int
    source: str
    original_name: str | None = None  # the screened base file name (indexing/ingest/names.py)
    case: CaseRecord = CaseRecord()
    labels: dict[str, Any] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """The archive row's column values."""
        files = {name: getattr(self, name) for name in ("sha256", "stored_path", "width", "height", "source", "original_name")}
        return {**files, **self.case.columns(), "labels": self.labels}


@dataclass(frozen=True)
class NewAnnotation:
    """One instance mask (COCO RLE {"size": [H, W], "counts": str}) of an image."""

    category_id: int
    instance_id: int
    mask_rle: dict[str, Any]
    origin: str = "expert"
    model_version: str = ""
    score: float | None = None


@dataclass(frozen=True)
class ArchiveStats:
    images: int
    deleted: int
    by_source: dict[str, int]
    by_diagnosis: dict[str, int]
    annotations: int
    sketches: int
    embeddings: int
    active_build_id: int | None


@dataclass(frozen=True)
class Consistency:
    """Files without a row and rows without a file; both empty in a healthy archive."""

    orphan_files: list[str]
    missing_files: list[str]

    @property
    def ok(self) -> bool:
        return not self.orphan_files and not self.missing_files


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), LOOKUP_CHUNK):
        yield values[start : start + LOOKUP_CHUNK]


# --- images ----------------------------------------------------------------------------------


def _json_problem(name: str, value: Any) -> str | None:
    if isinstance(value, str):
        return f"{name} contains a NUL byte" if "\x00" in value else None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} is not a finite number"
    if isinstance(value, dict):
        items = list(value.items())
        return next((p for k, v in items if (p := _json_problem(f"{name} {k}", v) or _json_problem(name, k))), None)
    if isinstance(value, (list, tuple)):
        return next((p for v in value if (p := _json_problem(name, v))), None)
    return None


def record_problem(record: NewImage) -> str | None:
    """Why the database would refuse `record`, checked here so SQLite (which takes a too-long string,
    a NUL byte or NaN in JSON silently) and PostgreSQL (which raises) behave the same. The reason
    names the field, never its value."""
    values = record.columns()
    for column in Image.__table__.columns:
        value = values.get(column.key)
        if isinstance(value, str):
            if "\x00" in value:
                return f"{column.key} contains a NUL byte"
            length = getattr(column.type, "length", None)
            if length is not None and len(value) > length:
                return f"{column.key} is longer than {length} characters"
    return _json_problem("findings", record.case.findings) or _json_problem("label", record.labels)


def add_image(session: Session, record: NewImage, annotations: Sequence[NewAnnotation] = ()) -> Image:
    return add_images(session, [(record, annotations)])[0]


def add_images(session: Session, records: Sequence[tuple[NewImage, Sequence[NewAnnotation]]]) -> list[Image]:
    """Insert images with their annotations in one flush (ingest's hot path: one multi-row insert)."""
    images = []
    for record, annotations in records:
        image = Image(**record.columns())
        image.annotations = [_annotation(annotation) for annotation in annotations]
        images.append(image)
    session.add_all(images)
    session.flush()
    return images


def get_image(session: Session, image_id: int, include_deleted: bool = False) -> Image | None:
    if not 0 < image_id <= MAX_ROW_ID:  # SQLite's driver cannot even send it (OverflowError)
        return None
    image = session.get(Image, image_id)
    if image is None or (image.deleted_at is not None and not include_deleted):
        return None
    return image


def list_images(
    session: Session,
    offset: int = 0,
    limit: int = 50,
    include_deleted: bool = False,
    diagnosis: str | None = None,
) -> list[Image]:
    query = select(Image).order_by(Image.id).offset(offset).limit(limit)
    if not include_deleted:
        query = query.where(Image.deleted_at.is_(None))
    if diagnosis is not None:
        query = query.where(Image.diagnosis == diagnosis)
    return list(session.scalars(query))


def existing_sha256(session: Session, digests: Sequence[str]) -> dict[str, str]:
    """The stored path of each of `digests` that already has a row (deleted rows included: a
    deleted image stays deleted)."""
    found: dict[str, str] = {}
    for chunk in _chunks(list(digests)):
        found.update((sha, path) for sha, path in session.execute(select(Image.sha256, Image.stored_path).where(Image.sha256.in_(chunk))))
    return found


def referenced_paths(session: Session, stored_paths: Sequence[str]) -> set[str]:
    """Which of `stored_paths` a committed row points at (the proof a remover needs)."""
    found: set[str] = set()
    for chunk in _chunks(list(stored_paths)):
        found.update(session.scalars(select(Image.stored_path).where(Image.stored_path.in_(chunk))))
    return found


def existing_sop_uids(session: Session, uids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(list(uids)):
        found.update(uid for uid in session.scalars(select(Image.sop_uid).where(Image.sop_uid.in_(chunk))) if uid)
    return found


def link_dicom_uids(session: Session, sha256: str, study_uid: str | None, series_uid: str | None, sop_uid: str) -> bool:
    """Give the row of `sha256` a DICOM's UIDs when it has none yet (a photo ingested before its
    DICOM); whether it did. A row that already has UIDs keeps them."""
    linked = session.execute(
        update(Image).where(Image.sha256 == sha256, Image.sop_uid.is_(None))
        .values(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
    )
    return bool(linked.rowcount)


def soft_delete_image(session: Session, image_id: int) -> Image:
    """Mark an image deleted (its row and file stay; the next index refresh drops it)."""
    image = get_image(session, image_id, include_deleted=True)
    if image is None:
        raise LookupError(f"no image with id {image_id}")
    if image.deleted_at is None:
        image.deleted_at = utc_now()
        session.flush()
    return image


def live_image_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Image.id).where(Image.deleted_at.is_(None)).order_by(Image.id)))


def deleted_image_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Image.id).where(Image.deleted_at.is_not(None)).order_by(Image.id)))


# --- annotations and sketches ----------------------------------------------------------------


def _annotation(new: NewAnnotation) -> Annotation:
    if new.origin not in ANNOTATION_ORIGINS:
        raise ValueError(f"annotation origin must be one of {ANNOTATION_ORIGINS}, got {new.origin!r}")
    if new.origin == "model" and not new.model_version:
        raise ValueError("a model annotation needs the model version that produced it")
    return Annotation(**new.__dict__)


def add_annotation(session: Session, image_id: int, annotation: NewAnnotation) -> Annotation:
    row = _annotation(annotation)
    row.image_id = image_id
    session.add(row)
    session.flush()
    return row


def list_annotations(session: Session, image_id: int, origin: str | None = None) -> list[Annotation]:
    query = select(Annotation).where(Annotation.image_id == image_id).order_by(Annotation.instance_id)
    if origin is not None:
        query = query.where(Annotation.origin == origin)
    return list(session.scalars(query))


def put_sketch(session: Session, image_id: int, model_version: str, png: bytes) -> Sketch:
    """Insert or replace the sketch of an image for a synthesizer version."""
    sketch = session.scalars(
        select(Sketch).where(Sketch.image_id == image_id, Sketch.model_version == model_version)
    ).one_or_none()
    if sketch is None:
        sketch = Sketch(image_id=image_id, model_version=model_version, png=png)
        session.add(sketch)
    else:
        sketch.png = png
        sketch.created_at = utc_now()
    session.flush()
    return sketch


def get_sketch(session: Session, image_id: int, model_version: str) -> bytes | None:
    return session.scalars(
        select(Sketch.png).where(Sketch.image_id == image_id, Sketch.model_version == model_version)
    ).one_or_none()


# --- embeddings ------------------------------------------------------------------------------


def put_embeddings(
    session: Session, model_version: str, kind: str, image_ids: Sequence[int], vectors: np.ndarray
) -> None:
    """Insert or replace one vector per image. vectors: [N, D] float."""
    if kind not in EMBEDDING_KINDS:
        raise ValueError(f"embedding kind must be one of {EMBEDDING_KINDS}, got {kind!r}")
    if vectors.ndim != 2 or vectors.shape[0] != len(image_ids):
        raise ValueError(f"expected vectors of shape [{len(image_ids)}, D], got {list(vectors.shape)}")
    vectors = np.ascontiguousarray(vectors, dtype=VECTOR_DTYPE)
    existing = {
        row.image_id: row
        for chunk in _chunks(list(image_ids))
        for row in session.scalars(
            select(Embedding).where(
                Embedding.model_version == model_version, Embedding.kind == kind, Embedding.image_id.in_(chunk)
            )
        )
    }
    for image_id, vector in zip(image_ids, vectors):
        row = existing.get(int(image_id))
        if row is None:
            session.add(
                Embedding(
                    image_id=int(image_id), model_version=model_version, kind=kind, dim=vector.shape[0], vector=vector.tobytes()
                )
            )
        else:
            row.dim, row.vector, row.created_at = vector.shape[0], vector.tobytes(), utc_now()
    session.flush()


def get_embeddings(
    session: Session, model_version: str, kind: str, include_deleted: bool = False, image_ids: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 [N], vectors float32 [N, D]) ordered by image id; deleted images left out by default.

    `image_ids`: only those images (looked up in chunks), e.g. the ones an index refresh adds.
    """
    query = (
        select(Embedding.image_id, Embedding.dim, Embedding.vector)
        .join(Image, Image.id == Embedding.image_id)
        .where(Embedding.model_version == model_version, Embedding.kind == kind)
        .order_by(Embedding.image_id)
    )
    if not include_deleted:
        query = query.where(Image.deleted_at.is_(None))
    if image_ids is None:
        rows = session.execute(query).all()
    else:
        wanted = sorted(int(i) for i in image_ids)
        rows = [row for chunk in _chunks(wanted) for row in session.execute(query.where(Embedding.image_id.in_(chunk))).all()]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=VECTOR_DTYPE)
    dims = {row.dim for row in rows}
    if len(dims) != 1:
        raise ValueError(f"embeddings {model_version}/{kind} mix dimensions {sorted(dims)}")
    ids = np.array([row.image_id for row in rows], dtype=np.int64)
    vectors = np.stack([np.frombuffer(row.vector, dtype=VECTOR_DTYPE) for row in rows])
    return ids, vectors


# --- index builds ----------------------------------------------------------------------------


def record_index_build(
    session: Session, model_version: str, factory: str, vector_count: int, file_path: str, checksum: str
) -> IndexBuild:
    """Record a written index file (status `ready`); `activate_index_build` makes the service use it."""
    build = IndexBuild(
        model_version=model_version,
        factory=factory,
        vector_count=vector_count,
        file_path=file_path,
        checksum=checksum,
        status="ready",
    )
    session.add(build)
    session.flush()
    return build


def activate_index_build(session: Session, build_id: int) -> IndexBuild:
    """Make one build the active one; the previously active build is retired."""
    build = session.get(IndexBuild, build_id)
    if build is None:
        raise LookupError(f"no index build with id {build_id}")
    if build.status not in ("ready", "active", "retired"):
        raise ValueError(f"index build {build_id} is {build.status}, only a finished build can be activated")
    session.execute(
        update(IndexBuild).where(IndexBuild.status == "active", IndexBuild.id != build_id).values(status="retired")
    )
    build.status = "active"
    build.activated_at = utc_now()
    session.flush()
    return build


def active_index_build(session: Session) -> IndexBuild | None:
    return session.scalars(select(IndexBuild).where(IndexBuild.status == "active")).one_or_none()


# --- API keys and the query log --------------------------------------------------------------


def _hash_secret(secret: str) -> str:
    # The secret is 256 random bits, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_api_key(session: Session, name: str, scopes: Sequence[str]) -> tuple[ApiKey, str]:
    """A new key; returns the row and the token `s2m_<prefix>_<secret>`, shown once and never stored."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {SCOPES}, got {list(scopes)}")
    prefix = secrets.token_hex(API_KEY_PREFIX_BYTES)
    secret = secrets.token_urlsafe(API_KEY_SECRET_BYTES)
    key = ApiKey(name=name, prefix=prefix, secret_hash=_hash_secret(secret), scopes=sorted(set(scopes)))
    session.add(key)
    session.flush()
    return key, f"{API_KEY_MARK}_{prefix}_{secret}"


def verify_api_key(session: Session, token: str, scope: str) -> ApiKey | None:
    """The key a token belongs to if it is valid, not revoked and grants `scope` (admin grants all)."""
    mark, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    if mark != API_KEY_MARK or not prefix or not secret:
        return None
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.secret_hash, _hash_secret(secret)):
        return None
    if scope not in key.scopes and "admin" not in key.scopes:
        return None
    return key


def revoke_api_key(session: Session, key_id: int) -> None:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise LookupError(f"no API key with id {key_id}")
    key.revoked_at = key.revoked_at or utc_now()
    session.flush()


def log_query(
    session: Session,
    api_key_id: int | None,
    k: int,
    latency_ms: float,
    result_ids: Sequence[int],
    filters: dict[str, Any] | None = None,
    *,
    uid: str | None = None,
    client: str | None = None,
    kind: str = "sketch",
    build_id: int | None = None,
    results: Sequence[dict[str, Any]] = (),
    timings_ms: dict[str, float] | None = None,
) -> QueryLog:
    """Append one search to the audit log (ids, scores and parameters only, never the sketch)."""
    entry = QueryLog(
        api_key_id=api_key_id, k=k, latency_ms=latency_ms, result_ids=[int(i) for i in result_ids], filters=filters or {},
        uid=uid, client=client, kind=kind, build_id=build_id, results=list(results), timings_ms=timings_ms or {},
    )
    session.add(entry)
    session.flush()
    return entry


def get_query(session: Session, uid: str) -> QueryLog | None:
    return session.scalars(select(QueryLog).where(QueryLog.uid == uid)).one_or_none()


def log_access(session: Session, api_key_id: int | None, action: str, client: str | None = None,
               image_id: int | None = None, query_uid: str | None = None) -> AccessLog:
    """Append one read of archive data (a case's metadata, pixels, sketch, a past query) to the audit."""
    entry = AccessLog(api_key_id=api_key_id, action=action, client=client, image_id=image_id, query_uid=query_uid)
    session.add(entry)
    session.flush()
    return entry


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


# --- whole-archive views ---------------------------------------------------------------------


def archive_stats(session: Session) -> ArchiveStats:
    live = Image.deleted_at.is_(None)
    active = active_index_build(session)
    return ArchiveStats(
        images=session.scalar(select(func.count()).select_from(Image).where(live)) or 0,
        deleted=session.scalar(select(func.count()).select_from(Image).where(Image.deleted_at.is_not(None))) or 0,
        by_source=dict(session.execute(select(Image.source, func.count()).where(live).group_by(Image.source)).all()),
        by_diagnosis={
            diagnosis or "(none)": count
            for diagnosis, count in session.execute(
                select(Image.diagnosis, func.count()).where(live).group_by(Image.diagnosis)
            ).all()
        },
        annotations=session.scalar(select(func.count()).select_from(Annotation)) or 0,
        sketches=session.scalar(select(func.count()).select_from(Sketch)) or 0,
        embeddings=session.scalar(select(func.count()).select_from(Embedding)) or 0,
        active_build_id=active.id if active else None,
    )


def consistency(session: Session, files: FileStore) -> Consistency:
    """Compare the rows' stored paths with the files on disk."""
    rows = set(session.scalars(select(Image.stored_path)))
    on_disk = set(files.stored_paths())
    return Consistency(
        orphan_files=sorted(on_disk - rows),
        missing_files=sorted(path for path in rows if not files.absolute(path).exists()),
    )
