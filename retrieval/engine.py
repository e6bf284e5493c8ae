"""The query engine: a sketch in, the closest archive cases out, each stage a named step.

    sketch --validate/canonicalise--> canonical sketch [R, R]
           --pipeline (E, G, H)-----> w, x_T
           --embed------------------> appearance C(x_T), latent (w - mean w), shape (-[Q/|Q|, DT_Q])
           --filter (DB)------------> allowed image ids (an id selector for FAISS)
           --faiss------------------> candidates of the fused index (oversampled)
           --rerank-----------------> exact channel scores from the stored vectors, fused
           --hydrate (DB)-----------> rows: metadata, DICOM UIDs (live and filter-passing only)

`search_many` runs the networks once for a whole batch of queries, so a service can micro-batch
concurrent requests. The engine is safe to call from several threads: models are loaded once and
only read, the active build is swapped by `reload_if_changed` under a lock, and a query keeps the
build it started with, so a swap drops no in-flight query.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from PIL import Image as PILImage
from sqlalchemy import select

from formats.errors import ProjectError
from formats.sketch import canonical_sketch
from generation.presets import SHIPPED_BUNDLE
from indexing import store
from indexing.archive import Archive
from indexing.fused_index import Build, ChannelWeights, IndexBuildError, active_build_id, fuse, load_build
from indexing.models import Embedding, Image
from indexing.settings import Settings
from indexing.shape import archive_vectors, query_vectors
from indexing.vectors import APPEARANCE, CHANNELS, LATENT, SHAPE, latent_vectors, stored_sketches

STAGES = ("sketch", "pipeline", "embed", "filter", "faiss", "rerank", "hydrate")
DEFAULT_K = 10
MAX_K = 100

SketchInput = bytes | Path | str | PILImage.Image | np.ndarray


@dataclass(frozen=True)
class Filters:
    """Metadata conditions, run in the DB; an empty Filters passes every live image.

    `diagnoses`: any of; `findings`: all of; dates inclusive (timezone-aware); patients are
    pseudonyms (`Image.patient_ref`): `patients` keeps only those, `exclude_patients` drops them.
    """

    diagnoses: tuple[str, ...] = ()
    findings: tuple[str, ...] = ()
    acquired_from: datetime | None = None
    acquired_to: datetime | None = None
    patients: tuple[str, ...] = ()
    exclude_patients: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self == Filters()

    def as_record(self) -> dict[str, Any]:
        """A JSON-able form (for the query log; pseudonyms only, never identifiers)."""
        return {
            key: (value.isoformat() if isinstance(value, datetime) else list(value))
            for key, value in self.__dict__.items()
            if value not in (None, ())
        }


@dataclass(frozen=True)
class Query:
    """One search; `weights` overrides the build's channel weights for this query only."""

    sketch: SketchInput
    k: int = DEFAULT_K
    filters: Filters = field(default_factory=Filters)
    weights: ChannelWeights | None = None


@dataclass(frozen=True)
class ChannelScores:
    """Exact per-channel scores: cosines for appearance and latent, minus the chamfer distance (px) for shape."""

    appearance: float
    latent: float
    shape: float


@dataclass(frozen=True)
class Hit:
    rank: int
    image_id: int
    score: float  # the fused, calibrated score the ranking is by
    channels: ChannelScores
    case_ref: str | None
    patient_ref: str | None
    diagnosis: str | None
    findings: tuple[str, ...]
    acquired_at: datetime | None
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    stored_path: str


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[Hit, ...]
    timings_ms: dict[str, float]  # stage -> ms (batched stages: the batch's time)
    sketch: np.ndarray  # uint8 [R, R], the canonical sketch the models read
    image: np.ndarray  # uint8 [R, R, 3], the generated x_T
    build_id: int
    filters: Filters


@dataclass(frozen=True)
class EngineConfig:
    bundle: Path = SHIPPED_BUNDLE
    device: str = "cpu"
    steps: int | None = None  # H's refinement steps (None: what H was trained with)
    oversample: int = 4  # FAISS candidates per requested hit, re-ranked exactly
    min_candidates: int = 50
    max_k: int = MAX_K


class EngineError(ProjectError):
    """The engine cannot serve (no active build, a build of another bundle, ...)."""


class SearchEngine:
    """Sketch -> SearchResult over one archive's active build; see the module docstring."""

    def __init__(self, archive: Archive, config: EngineConfig, pipeline: Any, embedder: Any, build: Build, version: str) -> None:
        self.archive = archive
        self.config = config
        self.pipeline = pipeline
        self.embedder = embedder
        self.version = version
        self._build = build
        self._swap = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, config: EngineConfig = EngineConfig()) -> "SearchEngine":
        """Open the archive, load E, G, H and C once, and the active build (which must be of this bundle)."""
        from generation.bundle import EMBEDDER, Bundle
        from generation.pipeline import Sketch2MedI
        from generation.training import resolve_device

        archive = Archive.open(settings)
        try:
            bundle = Bundle.open(config.bundle)
            version = bundle.version
            build = _active_build(archive)
            if build.version != version:
                raise EngineError(f"the active index build was made with bundle version {build.version}, "
                                  f"this engine loads {version}: run `s2m index build` with this bundle")
            device = resolve_device(config.device)
            bundle.check([EMBEDDER])
            pipeline = Sketch2MedI.from_bundle(bundle, device)
            embedder = bundle.load_embedder(device)
        except BaseException:
            archive.close()
            raise
        return cls(archive, config, pipeline, embedder, build, version)

    def close(self) -> None:
        self.archive.close()

    @property
    def build(self) -> Build:
        return self._build

    @property
    def resolution(self) -> int:
        return self.pipeline.resolution

    def reload_if_changed(self) -> bool:
        """Swap to a newly activated build (True if it swapped); queries in flight finish on the old one."""
        with self.archive.sessions() as session:
            current = active_build_id(session)
        if current is None or current == self._build.build_id:
            return False
        with self._swap:
            if current == self._build.build_id:
                return False
            build = _active_build(self.archive)
            if build.version != self.version:
                raise EngineError(f"the newly active index build is of bundle version {build.version}, not {self.version}")
            self._build = build
        return True

    def search(self, sketch: SketchInput, k: int = DEFAULT_K, filters: Filters | None = None,
               weights: ChannelWeights | None = None) -> SearchResult:
        return self.search_many([Query(sketch, k, filters or Filters(), weights)])[0]

    def search_many(self, queries: list[Query]) -> list[SearchResult]:
        """Answer a batch of queries; E, G, H and C run once over the whole batch."""
        if not queries:
            return []
        for query in queries:
            if not 1 <= query.k <= self.config.max_k:
                raise ValueError(f"k must be between 1 and {self.config.max_k}, got {query.k}")
        build = self._build  # this batch's build, whatever a reload does meanwhile
        timings: dict[str, float] = {}
        with _timed(timings, "sketch"):
            sketches = self.canonicalise([query.sketch for query in queries])
        with _timed(timings, "pipeline"):
            w, images = self.generate(sketches)
        with _timed(timings, "embed"):
            channels = self.embed(w, images, sketches, build)
        results = []
        for row, query in enumerate(queries):
            stage = dict(timings)
            with _timed(stage, "filter"):
                allowed = None if query.filters.empty else self.allowed_ids(query.filters)
            weights = query.weights or build.weights
            with _timed(stage, "faiss"):
                one = {name: vectors[row : row + 1] for name, vectors in channels.items()}
                candidates = self.candidates(build, one, weights, allowed, query.k)
            with _timed(stage, "rerank"):
                ranked = self.rerank(build, {name: vectors[row] for name, vectors in channels.items()}, weights, candidates)
            with _timed(stage, "hydrate"):
                hits = self.hydrate(ranked, query.filters, query.k)
            image = images[row].clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy()
            results.append(SearchResult(tuple(hits), stage, sketches[row], image, build.build_id, query.filters))
        return results

    # --- stages --------------------------------------------------------------------------------

    def canonicalise(self, sketches: list[SketchInput]) -> np.ndarray:
        """Validate and canonicalise each sketch -> uint8 [B, R, R]; raises SketchError on bad input."""
        return np.stack([canonical_sketch(sketch, self.resolution) for sketch in sketches])

    @torch.no_grad()
    def generate(self, sketches: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [B, R, R] -> (w [B, w_dim], x_T [B, 3, R, R] in [-1, 1])."""
        batch = torch.from_numpy(sketches).float().div(127.5).sub(1.0).unsqueeze(1)  # [B, 1, R, R]
        generated = self.pipeline.run(batch, self.config.steps)
        return generated.w, generated.image

    def embed(self, w: torch.Tensor, images: torch.Tensor, sketches: np.ndarray, build: Build) -> dict[str, np.ndarray]:
        """The query side of each channel: float32 [B, D_c]."""
        return {
            APPEARANCE: self.embedder.describe(images).numpy(),
            LATENT: latent_vectors(w, self.pipeline.encoder.w_avg),
            SHAPE: query_vectors(sketches, build.shape),
        }

    def allowed_ids(self, filters: Filters) -> np.ndarray:
        """Live image ids passing `filters` (int64, sorted), decided by the DB."""
        with self.archive.sessions() as session:
            rows = session.execute(_filtered(select(Image.id, Image.findings), filters).order_by(Image.id)).all()
        wanted = set(filters.findings)
        return np.array([row.id for row in rows if wanted <= set(row.findings or ())], dtype=np.int64)

    def candidates(self, build: Build, channels: dict[str, np.ndarray], weights: ChannelWeights,
                   allowed: np.ndarray | None, k: int) -> np.ndarray:
        """The fused index's top ids (oversampled for the exact re-rank), restricted to `allowed`."""
        if allowed is not None and len(allowed) == 0:
            return np.zeros(0, dtype=np.int64)
        fused = fuse(build.transforms, {name: weights.of(name) for name in CHANNELS}, channels, archive_side=False)
        count = min(build.ntotal, max(k * self.config.oversample, self.config.min_candidates))
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        selector = None if allowed is None else faiss.IDSelectorBatch(allowed)
        _, ids = build.index.search(fused, count, params=_search_parameters(build, selector))
        return ids[0][ids[0] >= 0]

    def rerank(self, build: Build, channels: dict[str, np.ndarray], weights: ChannelWeights,
               ids: np.ndarray) -> list[tuple[int, float, ChannelScores]]:
        """Exact channel scores of the candidates from their stored vectors; fused and sorted."""
        if len(ids) == 0:
            return []
        exact = self.stored_scores(build, channels, ids)
        ranked = []
        for image_id, scores in exact.items():
            fused = sum(weights.of(name) * build.scales[name] * getattr(scores, name) for name in CHANNELS)
            ranked.append((image_id, float(fused), scores))
        ranked.sort(key=lambda item: (-item[1], item[0]))
        return ranked

    def stored_scores(self, build: Build, channels: dict[str, np.ndarray], ids: np.ndarray) -> dict[int, ChannelScores]:
        """Each channel's exact score between one query's vectors and the stored vectors of `ids`."""
        id_list = [int(i) for i in ids]
        with self.archive.sessions() as session:
            rows = session.execute(
                select(Embedding.image_id, Embedding.kind, Embedding.vector).where(
                    Embedding.model_version == build.version, Embedding.image_id.in_(id_list),
                    Embedding.kind.in_((APPEARANCE, LATENT)),
                )
            ).all()
            sketches = stored_sketches(session, build.version, id_list)
        vectors: dict[tuple[int, str], np.ndarray] = {
            (row.image_id, row.kind): np.frombuffer(row.vector, dtype=store.VECTOR_DTYPE) for row in rows
        }
        found = [i for i in id_list if (i, APPEARANCE) in vectors and (i, LATENT) in vectors and i in sketches]
        if not found:
            return {}
        shape = archive_vectors(np.stack([sketches[i] for i in found]), build.shape) @ channels[SHAPE]
        appearance = np.stack([vectors[(i, APPEARANCE)] for i in found]) @ channels[APPEARANCE]
        latent = np.stack([vectors[(i, LATENT)] for i in found]) @ channels[LATENT]
        return {i: ChannelScores(float(a), float(l), float(s)) for i, a, l, s in zip(found, appearance, latent, shape)}

    def hydrate(self, ranked: list[tuple[int, float, ChannelScores]], filters: Filters, k: int) -> list[Hit]:
        """DB rows of the ranked ids, keeping only live rows that pass the filters, in rank order."""
        if not ranked:
            return []
        ids = [image_id for image_id, _, _ in ranked]
        with self.archive.sessions() as session:
            rows = {row.id: row for row in session.scalars(_filtered(select(Image), filters).where(Image.id.in_(ids)))}
        wanted = set(filters.findings)
        hits: list[Hit] = []
        for image_id, score, scores in ranked:
            row = rows.get(image_id)
            if row is None or not wanted <= set(row.findings or ()):
                continue
            hits.append(Hit(
                rank=len(hits) + 1, image_id=row.id, score=score, channels=scores, case_ref=row.case_ref,
                patient_ref=row.patient_ref, diagnosis=row.diagnosis, findings=tuple(row.findings or ()),
                acquired_at=row.acquired_at, study_uid=row.study_uid, series_uid=row.series_uid, sop_uid=row.sop_uid,
                stored_path=row.stored_path,
            ))
            if len(hits) == k:
                break
        return hits


def _active_build(archive: Archive) -> Build:
    with archive.sessions() as session:
        row = store.active_index_build(session)
    if row is None:
        raise EngineError("the archive has no active index build: run `s2m index build`")
    try:
        return load_build(archive, row)
    except IndexBuildError as error:
        raise EngineError(str(error)) from error


def _filtered(query: Any, filters: Filters) -> Any:
    """`query` over Image restricted to live rows passing the filters that SQL can express."""
    query = query.where(Image.deleted_at.is_(None))
    if filters.diagnoses:
        query = query.where(Image.diagnosis.in_(filters.diagnoses))
    if filters.acquired_from is not None:
        query = query.where(Image.acquired_at >= filters.acquired_from)
    if filters.acquired_to is not None:
        query = query.where(Image.acquired_at <= filters.acquired_to)
    if filters.patients:
        query = query.where(Image.patient_ref.in_(filters.patients))
    if filters.exclude_patients:
        query = query.where(Image.patient_ref.is_(None) | Image.patient_ref.not_in(filters.exclude_patients))
    return query


def _search_parameters(build: Build, selector: Any) -> Any:
    ivf = faiss.try_extract_index_ivf(build.index.index)
    if ivf is not None:
        params = faiss.SearchParametersIVF()
        params.nprobe = build.nprobe
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


class _timed:
    """Adds a block's wall time in ms to `timings[stage]`."""

    def __init__(self, timings: dict[str, float], stage: str) -> None:
        self.timings, self.stage = timings, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + (time.perf_counter() - self.start) * 1000.0
