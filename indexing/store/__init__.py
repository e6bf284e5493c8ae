"""The archive's repository: typed functions over a Session, used by ingest, the index builder, the engine and the API.

One module per aggregate (images, annotations and sketches, embeddings, index builds, access) and
`reads` for the filtered image reads and whole-archive views; every public name is here, so callers
write `store.add_image(...)`. Functions never commit; the caller owns the transaction (one per
ingest batch, one per request).
"""

from __future__ import annotations

from indexing.store.access import (
    API_KEY_MARK,
    API_KEY_PREFIX_BYTES,
    API_KEY_SECRET_BYTES,
    create_api_key,
    get_query,
    list_api_keys,
    log_access,
    log_query,
    revoke_api_key,
    verify_api_key,
)
from indexing.store.annotations import NewAnnotation, add_annotation, get_sketch, list_annotations, put_sketch
from indexing.store.builds import activate_index_build, active_index_build, record_index_build
from indexing.store.embeddings import VECTOR_DTYPE, embedding_vectors, get_embeddings, put_embeddings
from indexing.store.images import (
    NewImage,
    add_image,
    add_images,
    deleted_image_ids,
    existing_sha256,
    existing_sop_uids,
    get_image,
    link_dicom_uids,
    list_images,
    live_image_ids,
    record_problem,
    referenced_paths,
    soft_delete_image,
)
from indexing.store.lookup import LOOKUP_CHUNK, MAX_ROW_ID
from indexing.store.reads import ArchiveStats, Consistency, archive_stats, consistency, live_image_findings, live_images

__all__ = [
    "API_KEY_MARK", "API_KEY_PREFIX_BYTES", "API_KEY_SECRET_BYTES", "LOOKUP_CHUNK", "MAX_ROW_ID", "VECTOR_DTYPE",
    "ArchiveStats", "Consistency", "NewAnnotation", "NewImage",
    "activate_index_build", "active_index_build", "add_annotation", "add_image", "add_images", "archive_stats",
    "consistency", "create_api_key", "deleted_image_ids", "embedding_vectors", "existing_sha256", "existing_sop_uids", "get_embeddings",
    "get_image", "get_query", "get_sketch", "link_dicom_uids", "list_annotations", "list_api_keys", "list_images",
    "live_image_findings", "live_image_ids", "live_images", "log_access", "log_query", "put_embeddings", "put_sketch",
    "record_index_build", "record_problem", "referenced_paths", "revoke_api_key", "soft_delete_image", "verify_api_key",
]
