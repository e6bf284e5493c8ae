"""Access: API keys, the query log and the access log."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from indexing.models import SCOPES, AccessLog, ApiKey, QueryLog, utc_now

API_KEY_PREFIX_BYTES = 6
API_KEY_SECRET_BYTES = 32
API_KEY_MARK = "s2m"


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
    signs: Sequence[dict[str, Any]] = (),
) -> QueryLog:
    """Append one search to the audit log (ids, scores and parameters, its signs' names and strengths; never the sketch)."""
    entry = QueryLog(
        api_key_id=api_key_id, k=k, latency_ms=latency_ms, result_ids=[int(i) for i in result_ids], filters=filters or {},
        uid=uid, client=client, kind=kind, build_id=build_id, results=list(results), timings_ms=timings_ms or {},
        signs=list(signs) or None,
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
