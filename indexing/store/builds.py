"""Index builds: a written index file's row, and which one the service uses."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from indexing.models import IndexBuild, utc_now


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
