"""The archive side of the re-rank: candidates' stored vectors, read once per batch and kept in an LRU cache.

A case's stored vectors of one bundle version never change, and its archive-side shape vector (a
distance transform of its stored sketch, ~1 ms) is the re-rank's main cost, so the engine keeps the
most recently used cases in memory (`EngineConfig.stored_cache`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from indexing import store
from indexing.archive import Archive
from indexing.fused_index import Build
from indexing.shape import archive_vectors
from indexing.vectors import APPEARANCE, LATENT, stored_sketches


@dataclass(frozen=True)
class StoredCase:
    """One case's stored vectors of one bundle version, archive side (a cache entry)."""

    appearance: np.ndarray
    latent: np.ndarray
    shape: np.ndarray
    sketch: np.ndarray


@dataclass(frozen=True)
class StoredVectors:
    """Candidates' stored vectors, archive side: rows in `ids` order; shape is [DT_A, A/|A|]."""

    ids: list[int]
    appearance: np.ndarray  # float32 [N, D_a]
    latent: np.ndarray  # float32 [N, D_l]
    shape: np.ndarray  # float32 [N, 2 R^2]
    sketches: dict[int, np.ndarray]  # id -> uint8 [R, R]

    def rows(self, ids: np.ndarray) -> tuple[list[int], np.ndarray]:
        """The ids among `ids` that have every vector, and their row numbers here."""
        position = {image_id: row for row, image_id in enumerate(self.ids)}
        found = [int(i) for i in ids if int(i) in position]
        return found, np.array([position[i] for i in found], dtype=np.int64)


class StoredVectorCache:
    """Stored vectors by (bundle version, image id), the `size` most recently used kept; thread-safe."""

    def __init__(self, archive: Archive, size: int) -> None:
        self.archive = archive
        self.size = size
        self._cache: OrderedDict[tuple[str, int], StoredCase] = OrderedDict()
        self._lock = threading.Lock()

    def vectors(self, build: Build, ids: np.ndarray) -> StoredVectors:
        """The stored appearance and latent vectors, sketches and archive-side shape vectors of `ids`:
        one DB read for a whole batch, and only for ids not in the cache."""
        id_list = [int(i) for i in ids]
        with self._lock:
            cached = {i: self._cache[(build.version, i)] for i in id_list if (build.version, i) in self._cache}
            for i in cached:
                self._cache.move_to_end((build.version, i))
        missing = [i for i in id_list if i not in cached]
        if missing:
            fetched = self._fetch(build, missing)
            cached.update(fetched)
            with self._lock:
                for i, row in fetched.items():
                    self._cache[(build.version, i)] = row
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        found = [i for i in id_list if i in cached]
        if not found:
            empty = np.zeros((0, 0), np.float32)
            return StoredVectors([], empty, empty, np.zeros((0, build.shape.dim), np.float32), {})
        return StoredVectors(
            ids=found,
            appearance=np.stack([cached[i].appearance for i in found]),
            latent=np.stack([cached[i].latent for i in found]),
            shape=np.stack([cached[i].shape for i in found]),
            sketches={i: cached[i].sketch for i in found},
        )

    def _fetch(self, build: Build, ids: list[int]) -> dict[int, StoredCase]:
        with self.archive.sessions() as session:
            vectors = store.embedding_vectors(session, build.version, (APPEARANCE, LATENT), ids)
            sketches = stored_sketches(session, build.version, ids)
        found = [i for i in ids if (i, APPEARANCE) in vectors and (i, LATENT) in vectors and i in sketches]
        if not found:
            return {}
        shapes = archive_vectors(np.stack([sketches[i] for i in found]), build.shape)
        return {i: StoredCase(vectors[(i, APPEARANCE)], vectors[(i, LATENT)], shapes[row], sketches[i])
                for row, i in enumerate(found)}
