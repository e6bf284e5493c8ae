"""Stored vectors: one per image, bundle version and embedding kind."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexing.models import EMBEDDING_KINDS, Embedding, Image, utc_now
from indexing.store.lookup import chunks

VECTOR_DTYPE = np.float32


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
        for chunk in chunks(list(image_ids))
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
        rows = [row for chunk in chunks(wanted) for row in session.execute(query.where(Embedding.image_id.in_(chunk))).all()]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=VECTOR_DTYPE)
    dims = {row.dim for row in rows}
    if len(dims) != 1:
        raise ValueError(f"embeddings {model_version}/{kind} mix dimensions {sorted(dims)}")
    ids = np.array([row.image_id for row in rows], dtype=np.int64)
    vectors = np.stack([np.frombuffer(row.vector, dtype=VECTOR_DTYPE) for row in rows])
    return ids, vectors


def embedding_vectors(
    session: Session, model_version: str, kinds: Sequence[str], image_ids: Sequence[int]
) -> dict[tuple[int, str], np.ndarray]:
    """(image id, kind) -> float32 [D] of `image_ids`, deleted images included: several kinds in one read
    per chunk, for the engine's re-rank, which needs appearance and latent of each candidate together."""
    found: dict[tuple[int, str], np.ndarray] = {}
    for chunk in chunks(list(image_ids)):
        rows = session.execute(
            select(Embedding.image_id, Embedding.kind, Embedding.vector).where(
                Embedding.model_version == model_version, Embedding.image_id.in_(chunk), Embedding.kind.in_(tuple(kinds))
            )
        ).all()
        found.update({(row.image_id, row.kind): np.frombuffer(row.vector, dtype=VECTOR_DTYPE) for row in rows})
    return found
