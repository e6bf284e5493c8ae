"""Per-channel compression for the fused index: PCA fitted on the archive, applied asymmetrically.

A channel's score is an inner product q . a of a query vector and an archive vector. With the
archive's mean m and top principal directions P ([D, k], orthonormal columns),

    q . a  =  q . m  +  q . (a - m)  ~  q . m  +  (P^T q) . (P^T (a - m)),

so the archive side is centred and projected, the query side only projected, and `q . m` is one
constant per query that changes no ranking (the engine adds it back for the score it reports).
Centring both sides, as FAISS's `PCAMatrix` does, is right for symmetric channels only: for the
shape channel, whose query and archive vectors live in different halves of the space, it
destroys the score. One rule serves all three channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PCA_OVERSAMPLE = 10  # extra directions for the randomised SVD's accuracy
PCA_ITERATIONS = 4


@dataclass(frozen=True)
class ChannelTransform:
    """mean [D] and components [D, k]; `components` None is the identity (no compression)."""

    mean: np.ndarray
    components: np.ndarray | None

    @property
    def input_dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def output_dim(self) -> int:
        return self.input_dim if self.components is None else int(self.components.shape[1])

    @classmethod
    def identity(cls, dim: int) -> "ChannelTransform":
        return cls(np.zeros(dim, dtype=np.float32), None)

    @classmethod
    def fit(cls, archive: np.ndarray, dims: int | None, seed: int = 0) -> "ChannelTransform":
        """PCA to `dims` directions of archive vectors [N, D] (identity when dims is None or >= D)."""
        dim = archive.shape[1]
        if dims is None or dims >= dim:
            return cls.identity(dim)
        if dims < 1:
            raise ValueError(f"PCA dims must be at least 1, got {dims}")
        data = torch.from_numpy(np.ascontiguousarray(archive, dtype=np.float32))
        mean = data.mean(dim=0)
        rank = min(dims + PCA_OVERSAMPLE, *data.shape)
        torch.manual_seed(seed)
        _, _, v = torch.pca_lowrank(data - mean, q=rank, center=False, niter=PCA_ITERATIONS)  # v [D, rank]
        components = v[:, :dims]
        if components.shape[1] < dims:  # fewer archive vectors than directions asked for
            raise ValueError(f"PCA to {dims} dims needs at least {dims} archive vectors, got {len(archive)}")
        return cls(mean.numpy().astype(np.float32), components.numpy().astype(np.float32))

    def archive(self, vectors: np.ndarray) -> np.ndarray:
        """[N, D] -> [N, k]: centred, then projected."""
        if self.components is None:
            return np.ascontiguousarray(vectors, dtype=np.float32)
        return np.ascontiguousarray((vectors - self.mean) @ self.components, dtype=np.float32)

    def query(self, vectors: np.ndarray) -> np.ndarray:
        """[N, D] -> [N, k]: projected without centring."""
        if self.components is None:
            return np.ascontiguousarray(vectors, dtype=np.float32)
        return np.ascontiguousarray(vectors @ self.components, dtype=np.float32)

    def query_offset(self, vectors: np.ndarray) -> np.ndarray:
        """[N, D] -> [N]: the per-query constant q . m that the projection leaves out."""
        if self.components is None:
            return np.zeros(len(vectors), dtype=np.float32)
        return (vectors @ self.mean).astype(np.float32)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Named arrays for an `.npz` file (no pickles)."""
        out = {f"{prefix}.mean": self.mean}
        if self.components is not None:
            out[f"{prefix}.components"] = self.components
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> "ChannelTransform":
        components = arrays.get(f"{prefix}.components")
        return cls(np.asarray(arrays[f"{prefix}.mean"], np.float32), None if components is None else np.asarray(components, np.float32))
