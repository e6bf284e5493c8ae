"""The query engine: a sketch in, the closest archive cases out, each stage a named step.

    sketch --validate/canonicalise--> canonical sketch [R, R] (a CanonicalSketch passes through as it is)
           --pipeline (E, G, H)-----> w, x_T (a query's signs added to w before G and H: generation/signs.py)
           --embed------------------> appearance C(x_T) (+ the signs' appearance edit), latent (w - mean w),
                                      shape (-[Q/|Q|, DT_Q])
           --filter (DB)------------> allowed image ids (an id selector for FAISS)
           --faiss------------------> candidates of the fused index (oversampled)
           --rerank-----------------> exact channel scores from the stored vectors, fused
           --hydrate (DB)-----------> rows: metadata, DICOM UIDs (live and filter-passing only)

`search_many` runs the networks once for a whole batch of queries, and loads the candidates' stored
vectors once for the whole batch (queries of one archive share many candidates), so a service can
micro-batch concurrent requests. A query by example (`Query.like`, "more like this") takes an
archive case's own stored vectors instead of a sketch and skips the networks; a query by vectors
(`Query.vectors`: a refined or reopened search, retrieval/feedback.py) takes its channels as given. The engine is safe to call from several threads: models are loaded once and
only read, the active build is swapped by `reload_if_changed` under a lock, and a query keeps the
build it started with, so a swap drops no in-flight query. The networks come from the process's
one `QueryModels` (E, G, H and C of one opened bundle), which the service shares with `/v1/generate`
and the index refresh.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import faiss
import numpy as np
import torch
from PIL import Image as PILImage

from formats.errors import ProjectError
from formats.sketch import CanonicalSketch, canonical_sketch
from generation.pipeline import PipelineOutput, QueryModels
from generation.presets import SHIPPED_BUNDLE
from indexing import store
from indexing.archive import Archive
from indexing.faiss_device import place_index
from indexing.fused_index import Build, ChannelWeights, IndexBuildError, active_build_id, fuse, load_build
from indexing.models import Image
from indexing.settings import Settings
from indexing.shape import query_vectors
from indexing.vectors import APPEARANCE, CHANNELS, LATENT, SHAPE, latent_vectors
from retrieval.filters import Filters, sql_conditions
from retrieval.results import ChannelScores, Hit, SearchResult
from retrieval.stored import StoredVectorCache, StoredVectors

STAGES = ("sketch", "pipeline", "embed", "filter", "faiss", "rerank", "hydrate")
DEFAULT_K = 10
MAX_K = 100

SketchInput = CanonicalSketch | bytes | Path | str | PILImage.Image | np.ndarray


@dataclass(frozen=True)
class Query:
    """One search, by a sketch, by example (`like`: an archive image id) or by its query-side channel
    `vectors` (exactly one of the three).

    `weights` overrides the build's channel weights for this query only; `refine` False skips H
    (x_0 only: the fast live preview); `exclude`: image ids that never come back; `keep`: image ids that
    come first, in this order (a refined search's cases marked right); `signs` {sign: strength
    in [0, 1]} edits a sketch query in W (before G and H) and in the appearance space (`generation.signs`)."""

    sketch: SketchInput | None
    k: int = DEFAULT_K
    filters: Filters = field(default_factory=Filters)
    weights: ChannelWeights | None = None
    refine: bool = True
    like: int | None = None
    vectors: dict[str, np.ndarray] | None = field(default=None, compare=False)
    exclude: tuple[int, ...] = ()
    keep: tuple[int, ...] = ()
    signs: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if sum(given is not None for given in (self.sketch, self.like, self.vectors)) != 1:
            raise ValueError("a query has exactly one of a sketch, an example image id (like) or channel vectors")
        if self.signs and self.sketch is None:
            raise ValueError("signs edit a sketch query; a query by example or by vectors takes none")


@dataclass(frozen=True)
class EngineConfig:
    bundle: Path = SHIPPED_BUNDLE  # bundle and device: what `SearchEngine.open` loads when it is given no models
    device: str = "cpu"
    index_device: str = "auto"  # where the FAISS index searches: auto | cpu | cuda (indexing/faiss_device.py)
    steps: int | None = None  # H's refinement steps (None: what H was trained with)
    oversample: int = 4  # FAISS candidates per requested hit, re-ranked exactly
    min_candidates: int = 50
    max_k: int = MAX_K
    stored_cache: int = 2048  # cases whose stored vectors stay in memory (~37 KB each at 64 px)


class EngineError(ProjectError):
    """The engine cannot serve (no active build, a build of another bundle, ...)."""


class BundleChangedError(EngineError):
    """The active build is of another bundle than the engine's models. `bundle` is the folder the build
    recorded for it (None when none was recorded): a service may open it and move (api/service.py)."""

    def __init__(self, version: str, loaded: str, bundle: str | None) -> None:
        self.version, self.bundle = version, bundle
        where = f"its bundle folder {bundle} could not be served here" if bundle else "it recorded no bundle folder"
        super().__init__(f"the active index build is of bundle version {version}, this process loaded {loaded} and "
                         f"{where}: serve that bundle (S2M_MODEL) or run `s2m index build` with this one")


class ExampleNotFoundError(ProjectError, LookupError):
    """A query by example names an image that is not live or has no stored vectors of this build."""


class SearchEngine:
    """Sketch -> SearchResult over one archive's active build; see the module docstring."""

    def __init__(self, archive: Archive, config: EngineConfig, models: QueryModels, build: Build) -> None:
        self.archive = archive
        self.config = config
        self.models = models
        self.pipeline = models.pipeline
        self.embedder = models.embedder
        self.version = models.version
        self._build = build
        self._swap = threading.Lock()
        self._stored = StoredVectorCache(archive, config.stored_cache)

    @classmethod
    def open(cls, settings: Settings, config: EngineConfig = EngineConfig(), models: QueryModels | None = None) -> "SearchEngine":
        """Open the archive and its active build (which must be of the models' bundle), with the process's
        models, or without them E, G, H and C of `config.bundle` loaded once on `config.device`."""
        from generation.bundle import Bundle
        from generation.training import resolve_device

        archive = Archive.open(settings)
        try:
            bundle = models.bundle if models is not None else Bundle.open(config.bundle)
            build = _active_build(archive, config.index_device, bundle.version)
            if models is None:
                models = QueryModels.load(bundle, resolve_device(config.device))
        except BaseException:
            archive.close()
            raise
        return cls(archive, config, models, build)

    def close(self) -> None:
        self.archive.close()

    @property
    def build(self) -> Build:
        return self._build

    @property
    def resolution(self) -> int:
        return self.pipeline.resolution

    def reload_if_changed(self) -> bool:
        """Swap to a newly activated build (True if it swapped); queries in flight finish on the old one.

        A build of another bundle is BundleChangedError, raised before its files are read: this engine's
        models cannot serve it (the service opens a new engine with that bundle's models)."""
        with self.archive.sessions() as session:
            current = active_build_id(session)
        if current is None or current == self._build.build_id:
            return False
        with self._swap:
            if current == self._build.build_id:
                return False
            self._build = _active_build(self.archive, self.config.index_device, self.version)
        return True

    def search(self, sketch: SketchInput, k: int = DEFAULT_K, filters: Filters | None = None,
               weights: ChannelWeights | None = None, refine: bool = True,
               signs: Mapping[str, float] | None = None) -> SearchResult:
        return self.search_many([Query(sketch, k, filters or Filters(), weights, refine, signs=signs or {})])[0]

    def search_like(self, image_id: int, k: int = DEFAULT_K, filters: Filters | None = None) -> SearchResult:
        """"More like this": the cases closest to archive image `image_id` by its own stored vectors."""
        return self.search_many([Query(None, k, filters or Filters(), like=image_id)])[0]

    def search_many(self, queries: list[Query]) -> list[SearchResult]:
        """Answer a batch of queries; E, G, H and C run once per refine setting, the stored vectors load once."""
        if not queries:
            return []
        for query in queries:
            if not 1 <= query.k <= self.config.max_k:
                raise ValueError(f"k must be between 1 and {self.config.max_k}, got {query.k}")
        strengths = [self.models.sign_strengths(query.signs) for query in queries]  # SignError before any work
        build = self._build  # this batch's build, whatever a reload does meanwhile
        timings: dict[str, float] = {}
        drawn = [row for row, query in enumerate(queries) if query.sketch is not None]
        channels: dict[str, np.ndarray] = {}
        sketches: dict[int, np.ndarray] = {}
        steps: dict[int, tuple[np.ndarray, ...]] = {}
        if drawn:
            with _timed(timings, "sketch"):
                canonical = self.canonicalise([queries[row].sketch for row in drawn])
            for refine in (True, False):
                group = [i for i, row in enumerate(drawn) if queries[row].refine is refine]
                if not group:
                    continue
                with _timed(timings, "pipeline"):
                    generated = self.generate(canonical[group], None if refine else 0, [strengths[drawn[i]] for i in group])
                with _timed(timings, "embed"):
                    embedded = self.embed(generated.w, generated.image, canonical[group], build)
                for j, i in enumerate(group):
                    row = drawn[i]
                    channels.update({(row, name): embedded[name][j] for name in CHANNELS})
                    if strengths[row]:
                        channels[(row, APPEARANCE)] = self.models.signs.edit_appearance(embedded[APPEARANCE][j], strengths[row])
                        if self.models.signs.latent_outline_only:
                            channels[(row, LATENT)] = self.models.signs.outline_latent(embedded[LATENT][j])
                    steps[row] = generated.pictures(j)
                    sketches[row] = canonical[i]
        examples = sorted({query.like for query in queries if query.like is not None})
        if examples:
            with _timed(timings, "embed"):
                stored = self.stored_vectors(build, np.array(examples, dtype=np.int64))
                for row, query in enumerate(queries):
                    if query.like is None:
                        continue
                    if query.like not in stored.sketches:
                        raise ExampleNotFoundError(f"archive image {query.like} is not in the active index build")
                    position = stored.ids.index(query.like)
                    sketches[row] = stored.sketches[query.like]
                    channels[(row, APPEARANCE)] = stored.appearance[position]
                    channels[(row, LATENT)] = stored.latent[position]
                    channels[(row, SHAPE)] = query_vectors(sketches[row][None], build.shape)[0]
        channels.update({(row, name): query.vectors[name] for row, query in enumerate(queries) if query.vectors for name in CHANNELS})
        stages: list[dict[str, float]] = [dict(timings) for _ in queries]
        allowed: dict[Filters, np.ndarray | None] = {}
        with _timed(timings, "filter"):
            for query in queries:
                if query.filters not in allowed:
                    allowed[query.filters] = None if query.filters.empty else self.allowed_ids(query.filters)
        candidates = []
        for row, query in enumerate(queries):
            stages[row]["filter"] = timings["filter"]
            one = {name: channels[(row, name)][None] for name in CHANNELS}
            with _timed(stages[row], "faiss"):
                found = self.candidates(build, one, self.weights_for(query, strengths[row], build), allowed[query.filters],
                                        query.k + len(query.exclude))
            excluded = set(query.exclude)
            kept = np.array([i for i in query.keep if i not in excluded], dtype=np.int64)
            found = found[~np.isin(found, [*query.exclude, *query.keep, *([query.like] if query.like is not None else [])])]
            candidates.append(np.concatenate([kept, found]))
        with _timed(timings, "rerank"):
            union = np.unique(np.concatenate(candidates)) if candidates else np.zeros(0, np.int64)
            stored = self.stored_vectors(build, union)
            ranked = [
                kept_first(self.rerank(build, {name: channels[(row, name)] for name in CHANNELS},
                                       self.weights_for(query, strengths[row], build), found, stored), query.keep)
                for row, (query, found) in enumerate(zip(queries, candidates))
            ]
        hits = self.hydrate_many(ranked, queries, timings)
        results = []
        for row, query in enumerate(queries):
            stage = {**stages[row], "rerank": timings["rerank"], "hydrate": timings["hydrate"]}
            refined = steps.get(row, ())
            applied = self.models.signs.applied(strengths[row]) if strengths[row] else ()
            results.append(SearchResult(tuple(hits[row]), stage, sketches.get(row), refined[-1] if refined else None,
                                        build.build_id, query.filters, refined,
                                        {name: channels[(row, name)] for name in CHANNELS}, applied))
        return results

    # --- stages --------------------------------------------------------------------------------

    def canonicalise(self, sketches: list[SketchInput]) -> np.ndarray:
        """Each sketch as the canonical uint8 [B, R, R] the models read; a CanonicalSketch passes through as it
        is, anything else is validated and canonicalised here (SketchError on bad input)."""
        return np.stack([_canonical(sketch, self.resolution) for sketch in sketches])

    def generate(self, sketches: np.ndarray, steps: int | None = None,
                 signs: list[Mapping[str, float]] | None = None) -> PipelineOutput:
        """uint8 [B, R, R] -> the pipeline's output (w [B, w_dim], x_0 and x_1..x_T [B, 3, R, R] in [-1, 1]).

        `steps` None: the engine's configured T (H's own by default); 0: x_0 only. `signs`: each sketch's
        checked strengths, applied in W."""
        return self.models.generate(sketches, self.config.steps if steps is None else steps, signs)

    def weights_for(self, query: Query, strengths: Mapping[str, float], build: Build) -> ChannelWeights:
        """The query's own weights, else the build's; a sign query weighs appearance at least as the signs
        record (the appearance edit is what carries the signs into the ranking, and the default weighs it 0)
        and latent as they record, when they do (E's latent carries the findings it guessed from the outline)."""
        if query.weights is not None:
            return query.weights
        if not strengths:
            return build.weights
        signs = self.models.signs
        latent = build.weights.latent if signs.latent_weight is None else signs.latent_weight
        return dataclasses.replace(build.weights, appearance=max(build.weights.appearance, signs.appearance_weight), latent=latent)

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
            rows = store.live_image_findings(session, sql_conditions(filters))
        wanted = set(filters.findings)
        return np.array([row.id for row in rows if wanted <= set(row.findings or ())], dtype=np.int64)

    def candidates(self, build: Build, channels: dict[str, np.ndarray], weights: ChannelWeights,
                   allowed: np.ndarray | None, k: int) -> np.ndarray:
        """The fused index's top ids (oversampled for the exact re-rank), restricted to `allowed`."""
        if allowed is not None and len(allowed) == 0:
            return np.zeros(0, dtype=np.int64)
        fused = fuse(build.transforms, {name: weights.of(name) for name in CHANNELS}, channels, archive_side=False)
        # one more than asked, so a query by example can drop its own case and still fill k
        count = min(build.ntotal, max(k * self.config.oversample, self.config.min_candidates) + 1)
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if allowed is None and build.placed.gpu_index is not None:  # GPU indexes take no id selector
            _, ids = build.placed.gpu_index.search(fused, count)
        else:
            selector = None if allowed is None else faiss.IDSelectorBatch(allowed)
            _, ids = build.index.search(fused, count, params=_search_parameters(build, selector))
        return ids[0][ids[0] >= 0]

    def stored_vectors(self, build: Build, ids: np.ndarray) -> StoredVectors:
        """The stored appearance and latent vectors, sketches and archive-side shape vectors of `ids` (cached)."""
        return self._stored.vectors(build, ids)

    def rerank(self, build: Build, channels: dict[str, np.ndarray], weights: ChannelWeights,
               ids: np.ndarray, stored: StoredVectors) -> list[tuple[int, float, ChannelScores]]:
        """Exact channel scores of one query's candidates from their stored vectors; fused and sorted."""
        found, rows = stored.rows(ids)
        if not found:
            return []
        appearance = stored.appearance[rows] @ channels[APPEARANCE]
        latent = stored.latent[rows] @ channels[LATENT]
        shape = stored.shape[rows] @ channels[SHAPE]
        ranked = []
        for image_id, a, l, s in zip(found, appearance, latent, shape):
            scores = ChannelScores(float(a), float(l), float(s))
            fused = sum(weights.of(name) * build.scales[name] * getattr(scores, name) for name in CHANNELS)
            ranked.append((image_id, float(fused), scores))
        ranked.sort(key=lambda item: (-item[1], item[0]))
        return ranked

    def hydrate_many(self, ranked: list[list[tuple[int, float, ChannelScores]]], queries: list[Query],
                     timings: dict[str, float]) -> list[list[Hit]]:
        """The hits of each query: one DB read per distinct filter set of the batch, then split by query.

        The read takes each ranking's first k ids (the index searched the filtered ids, so they nearly
        always pass); a second read fetches the rest of a ranking only for a query left short."""
        hits: list[list[Hit]] = [[] for _ in queries]
        with _timed(timings, "hydrate"):
            for filters in dict.fromkeys(query.filters for query in queries):
                rows = [row for row, query in enumerate(queries) if query.filters == filters]
                first = {image_id for row in rows for image_id, _, _ in ranked[row][: queries[row].k]}
                found = self.rows_passing(sorted(first), filters)
                for row in rows:
                    hits[row] = self.hits(ranked[row], found, queries[row].k)
                short = [row for row in rows if len(hits[row]) < queries[row].k]
                rest = {image_id for row in short for image_id, _, _ in ranked[row]} - first
                if rest:
                    found.update(self.rows_passing(sorted(rest), filters))
                    for row in short:
                        hits[row] = self.hits(ranked[row], found, queries[row].k)
        return hits

    def rows_passing(self, ids: list[int], filters: Filters) -> dict[int, Image]:
        """DB rows of `ids` that are live and pass `filters` (SQL and the all-of findings)."""
        if not ids:
            return {}
        wanted = set(filters.findings)
        with self.archive.sessions() as session:
            rows = store.live_images(session, ids, sql_conditions(filters))
        return {image_id: row for image_id, row in rows.items() if wanted <= set(row.findings or ())}

    @staticmethod
    def hits(ranked: list[tuple[int, float, ChannelScores]], rows: dict[int, Image], k: int) -> list[Hit]:
        """The first k ranked ids that have a passing row, as hits in rank order."""
        hits: list[Hit] = []
        for image_id, score, scores in ranked:
            row = rows.get(image_id)
            if row is None:
                continue
            hits.append(Hit.from_row(len(hits) + 1, row, score, scores))
            if len(hits) == k:
                break
        return hits


def kept_first(ranked: list[tuple[int, float, ChannelScores]], keep: tuple[int, ...]) -> list[tuple[int, float, ChannelScores]]:
    """A ranking with the `keep` ids first, in `keep`'s order, then the rest as ranked."""
    if not keep:
        return ranked
    order = {image_id: position for position, image_id in enumerate(keep)}
    return sorted((item for item in ranked if item[0] in order), key=lambda item: order[item[0]]) + \
        [item for item in ranked if item[0] not in order]


def _active_build(archive: Archive, index_device: str, version: str) -> Build:
    """The active build, loaded and placed; BundleChangedError (before reading any file) when it is not of `version`."""
    with archive.sessions() as session:
        row = store.active_index_build(session)
    if row is None:
        raise EngineError("the archive has no active index build: run `s2m index build`")
    if row.model_version != version:
        raise BundleChangedError(row.model_version, version, (row.config or {}).get("bundle"))
    try:
        build = load_build(archive, row)
    except IndexBuildError as error:
        raise EngineError(str(error)) from error
    return dataclasses.replace(build, placed=place_index(build.index, index_device, build.nprobe))


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


def _canonical(sketch: SketchInput, resolution: int) -> np.ndarray:
    if not isinstance(sketch, CanonicalSketch):
        return canonical_sketch(sketch, resolution)
    if sketch.resolution != resolution:
        raise ValueError(f"a canonical sketch of {sketch.resolution} px reached an engine at {resolution} px")
    return sketch.pixels


class _timed:
    """Adds a block's wall time in ms to `timings[stage]`."""

    def __init__(self, timings: dict[str, float], stage: str) -> None:
        self.timings, self.stage = timings, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + (time.perf_counter() - self.start) * 1000.0
