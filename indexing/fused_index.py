"""The fused FAISS index over the three channels: build, refresh, load, status.

Each archive image is one vector, the concatenation over channels c of kappa_c T_c(a_c): T_c is
the channel's transform (asymmetric PCA, `indexing.transforms`) and kappa_c = 1 / (the spread of
the channel's scores on the archive), so channels of different score ranges weigh alike. A query
is the concatenation of w_c T_c(q_c), with w_c the user's channel weights, so the inner product
is sum_c w_c kappa_c s_c (up to per-query constants): one FAISS search answers the fused query,
exactly for `Flat`, and the weights change with no rebuild at all (they live on the query side
and in the build's DB record).

An index file and its transforms are written to temporary names, fsynced and renamed; the DB then
records the build and activates it in one transaction, so a killed build leaves the previous
build active and readable. FAISS ids are DB image ids (IndexIDMap2).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from formats.errors import InputError, ProjectError
from generation.files import atomic_target
from indexing import store
from indexing.archive import Archive
from indexing.build_files import INDEX_FOLDER, prune_retired_builds
from indexing.db import session_scope
from indexing.faiss_device import PlacedIndex
from indexing.filestore import file_sha256
from indexing.models import Embedding, Image, IndexBuild, utc_now
from indexing.reference import record_reference, reference_sample
from indexing.shape import ShapeConfig, archive_vectors, query_vectors
from indexing.transforms import ChannelTransform
from indexing.vectors import APPEARANCE, CHANNELS, LATENT, SHAPE, stored_sketches

DEFAULT_FACTORY = "Flat"
DEFAULT_TRAIN_SAMPLE = 100_000
DEFAULT_CALIBRATION_SAMPLE = 500
UNREMOVABLE_FACTORIES = ("HNSW",)  # FAISS cannot remove from a graph index: refresh rebuilds it


class IndexBuildError(ProjectError):
    """An index cannot be built, loaded or refreshed (a sentence the CLI shows as is)."""


class NoActiveBuildError(IndexBuildError, InputError):
    """A command that needs an active build was run before `s2m index build` (a usage error: exit 2)."""

    def __init__(self) -> None:
        super().__init__("the archive has no active index build: run `s2m index build` first")


class UnusableBuildError(IndexBuildError, InputError):
    """`s2m index activate` of a build that is unknown, unfinished or damaged (nothing changes: exit 2)."""


def require_active_build(archive: Archive) -> None:
    """Refuse early (before any embedding work) when there is no active build to refresh or reweight."""
    with archive.sessions() as session:
        if store.active_index_build(session) is None:
            raise NoActiveBuildError()


@dataclass(frozen=True)
class ChannelWeights:
    """The user's weight of each calibrated channel in the fused score.

    Defaults: chosen on the validation half of 2 x 300 free-hand queries on a 2,000-phantom archive
    with the shipped bundle (docs/benchmarks.md, issue 15): shape carries the exact-case and
    similar-case signal, the latent a little on top; appearance is kept as a channel (and a score)
    but weighs nothing by default.
    """

    appearance: float = 0.0
    latent: float = 0.1
    shape: float = 1.0

    def __post_init__(self) -> None:
        values = asdict(self)
        if any(value < 0 for value in values.values()) or not any(values.values()):
            raise ValueError(f"channel weights must be >= 0 and not all zero, got {values}")

    def of(self, channel: str) -> float:
        return float(getattr(self, channel))


@dataclass(frozen=True)
class BuildConfig:
    """How a build compresses, calibrates and indexes the stored vectors."""

    factory: str = DEFAULT_FACTORY
    appearance_dims: int | None = 256
    latent_dims: int | None = None
    shape_dims: int | None = 64
    weights: ChannelWeights = field(default_factory=ChannelWeights)
    shape: ShapeConfig = field(default_factory=ShapeConfig)
    nprobe: int = 32  # IVF lists searched: recall@10 0.965 at 1M vectors, p50 2.6 ms (docs/benchmarks.md)
    train_sample: int = DEFAULT_TRAIN_SAMPLE
    calibration_sample: int = DEFAULT_CALIBRATION_SAMPLE
    seed: int = 0

    def dims(self, channel: str) -> int | None:
        return {APPEARANCE: self.appearance_dims, LATENT: self.latent_dims, SHAPE: self.shape_dims}[channel]


@dataclass(frozen=True)
class ArchiveVectors:
    """Every channel's raw vectors of the images that have all three, ordered by id."""

    ids: np.ndarray  # int64 [N]
    channels: dict[str, np.ndarray]  # name -> float32 [N, D_c]
    sketches: np.ndarray  # uint8 [N, R, R], the stored synthesized sketches


@dataclass(frozen=True)
class Build:
    """A loaded build: its FAISS index, transforms, calibration and weights."""

    build_id: int
    version: str
    index: faiss.Index
    transforms: dict[str, ChannelTransform]
    scales: dict[str, float]
    weights: ChannelWeights
    shape: ShapeConfig
    factory: str
    nprobe: int
    created_at: datetime
    placed: PlacedIndex = field(default_factory=PlacedIndex)  # a GPU copy for unfiltered search, if any
    bundle: str | None = None  # the folder of the bundle it was built with, as recorded (replicas move to it)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def fused_archive(self, vectors: ArchiveVectors) -> np.ndarray:
        return fuse(self.transforms, self.scales, vectors.channels, archive_side=True)


def fuse(transforms: dict[str, ChannelTransform], factors: dict[str, float], channels: dict[str, np.ndarray],
         archive_side: bool) -> np.ndarray:
    """[N, sum_c k_c] = concat_c factor_c * T_c(x_c), archive or query side of each transform."""
    parts = []
    for name in CHANNELS:
        transform = transforms[name]
        projected = transform.archive(channels[name]) if archive_side else transform.query(channels[name])
        parts.append(projected * np.float32(factors[name]))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def embedded_ids(session: Session, version: str) -> np.ndarray:
    """Live images whose vectors of `version` are stored (the job writes all of an image's at once)."""
    query = (select(Embedding.image_id).join(Image, Image.id == Embedding.image_id)
             .where(Embedding.model_version == version, Embedding.kind == LATENT, Image.deleted_at.is_(None)))
    return np.array(sorted(session.scalars(query)), dtype=np.int64)


def load_archive_vectors(session: Session, version: str, shape: ShapeConfig, ids: np.ndarray | None = None) -> ArchiveVectors:
    """The stored vectors of live images (all, or only `ids`) that have every channel for `version`."""
    wanted = None if ids is None else ids.tolist()
    appearance_ids, appearance = store.get_embeddings(session, version, APPEARANCE, image_ids=wanted)
    latent_ids, latent = store.get_embeddings(session, version, LATENT, image_ids=wanted)
    common = np.intersect1d(appearance_ids, latent_ids)
    sketches = stored_sketches(session, version, common.tolist())
    common = np.array([i for i in common if int(i) in sketches], dtype=np.int64)
    if len(common) == 0:
        return ArchiveVectors(common, {}, np.zeros((0, shape.side, shape.side), np.uint8))
    pick_a = np.searchsorted(appearance_ids, common)
    pick_l = np.searchsorted(latent_ids, common)
    drawn = np.stack([sketches[int(i)] for i in common])
    channels = {APPEARANCE: appearance[pick_a], LATENT: latent[pick_l], SHAPE: archive_vectors(drawn, shape)}
    return ArchiveVectors(common, channels, drawn)


def calibrate(vectors: ArchiveVectors, shape_queries: np.ndarray, sample: int, seed: int) -> dict[str, float]:
    """kappa_c = 1 / std of channel c's scores between a sample of archive images (as queries) and the archive.

    The archive's own vectors stand in for queries (appearance and latent are symmetric; the shape
    query of an archive image comes from its stored sketch), so calibration needs no query set.
    """
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors.ids), size=min(sample, len(vectors.ids)), replace=False)
    scales = {}
    for name in CHANNELS:
        queries = shape_queries[rows] if name == SHAPE else vectors.channels[name][rows]
        spread = float((queries @ vectors.channels[name].T).std())
        scales[name] = 1.0 / spread if spread > 0 else 1.0
    return scales


def _new_index(factory: str, dim: int, fused: np.ndarray, train_sample: int, seed: int) -> faiss.Index:
    try:
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise IndexBuildError(f"FAISS cannot build the factory string {factory!r}") from error
    index = faiss.IndexIDMap2(inner)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = fused[rng.choice(len(fused), size=min(train_sample, len(fused)), replace=False)]
        try:
            index.train(sample)
        except RuntimeError as error:
            raise IndexBuildError(f"training {factory!r} needs more vectors than the archive's {len(fused)}") from error
    return index


def _write_build_files(folder: Path, index: faiss.Index, transforms: dict[str, ChannelTransform]) -> tuple[Path, Path]:
    """Index and transforms under new names, each written to a temporary file, fsynced and renamed."""
    stem = f"build-{utc_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    index_path, transforms_path = folder / f"{stem}.faiss", folder / f"{stem}.npz"
    arrays = {key: value for name in CHANNELS for key, value in transforms[name].arrays(name).items()}
    with atomic_target(transforms_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    with atomic_target(index_path) as tmp:
        faiss.write_index(index, tmp)
    return index_path, transforms_path


def _record(session: Session, archive: Archive, version: str, config: BuildConfig, index: faiss.Index,
            index_path: Path, transforms_path: Path, scales: dict[str, float], bundle: str | None, activate: bool) -> IndexBuild:
    """Record a written build (with its bundle's folder) and, if `activate`, make it the active one (one transaction)."""
    build = store.record_index_build(
        session, version, config.factory, int(index.ntotal),
        str(index_path.relative_to(archive.settings.data_dir)), file_sha256(index_path),
    )
    build.config = {
        "transforms_file": str(transforms_path.relative_to(archive.settings.data_dir)),
        "transforms_checksum": file_sha256(transforms_path),
        "scales": scales,
        "weights": asdict(config.weights),
        "dims": {name: config.dims(name) for name in CHANNELS},
        "shape": asdict(config.shape),
        "nprobe": config.nprobe,
        "bundle": bundle,
    }
    if activate:
        store.activate_index_build(session, build.id)
    return build


def build_index(archive: Archive, version: str, config: BuildConfig = BuildConfig(), like: Build | None = None,
                bundle: Path | str | None = None, activate: bool = True) -> IndexBuild:
    """A fresh build from the stored vectors of `version`: transforms fitted, calibrated, indexed, activated.

    `like`: keep that build's transforms and calibration instead of fitting new ones (what a
    refresh keeps; a graph index that cannot remove vectors is rebuilt this way). `bundle`: the
    folder of `version`'s bundle, recorded so that serving replicas can move to it; `activate` False
    leaves the build `ready` beside the active one (`s2m index activate` switches later).
    """
    if like is not None:
        config, bundle = _config_of(like), bundle or like.bundle
    with archive.sessions() as session:
        vectors = load_archive_vectors(session, version, config.shape)
    if len(vectors.ids) == 0:
        raise IndexBuildError(f"no stored vectors for bundle version {version}: run `s2m index build` with the bundle first")
    if like is not None:
        transforms, scales = like.transforms, like.scales
    else:
        transforms = {
            # centred archive vectors span at most N - 1 directions: projecting onto them loses nothing
            name: ChannelTransform.fit(vectors.channels[name], _clamp(config.dims(name), len(vectors.ids)), config.seed)
            for name in CHANNELS
        }
        scales = calibrate(vectors, query_vectors(vectors.sketches, config.shape), config.calibration_sample, config.seed)
    fused = fuse(transforms, scales, vectors.channels, archive_side=True)
    index = _new_index(config.factory, fused.shape[1], fused, config.train_sample, config.seed)
    index.add_with_ids(fused, vectors.ids)
    return _save(archive, version, config, index, transforms, scales, None if bundle is None else str(bundle), activate)


def _clamp(dims: int | None, count: int) -> int | None:
    return None if dims is None else max(1, min(dims, count - 1))


def _save(archive: Archive, version: str, config: BuildConfig, index: faiss.Index, transforms: dict[str, ChannelTransform],
          scales: dict[str, float], bundle: str | None, activate: bool = True) -> IndexBuild:
    index_path, transforms_path = _write_build_files(archive.settings.data_dir / INDEX_FOLDER, index, transforms)
    with session_scope(archive.sessions) as session:
        build = _record(session, archive, version, config, index, index_path, transforms_path, scales, bundle, activate)
        sample = load_archive_vectors(session, version, config.shape, ids=reference_sample(index, config.seed))
        record_reference(session, build, sample.channels, sample.sketches, config.shape, config.seed)  # the percentiles' pairs
    prune_retired_builds(archive)  # only once the new build is committed active
    return build


@dataclass(frozen=True)
class RefreshReport:
    build: IndexBuild
    added: int
    removed: int
    rebuilt: bool


def refresh_index(archive: Archive, version: str) -> RefreshReport:
    """A new build from the active one: images embedded since are added, soft-deleted ones removed.

    Transforms, calibration and weights stay those of the active build. A graph index (HNSW)
    cannot remove vectors, so when something was deleted it is rebuilt from scratch (and says so).
    """
    active = load_active_build(archive)
    if active is None:
        raise NoActiveBuildError()
    if active.version != version:
        raise IndexBuildError(f"the active build is of bundle version {active.version}, not {version}: run `s2m index build`")
    indexed = active.ids()
    with archive.sessions() as session:
        embedded = embedded_ids(session, version)
    removed = np.setdiff1d(indexed, embedded)  # soft-deleted since (their vectors stay in the DB)
    added_ids = np.setdiff1d(embedded, indexed)
    if len(removed) and any(active.factory.startswith(name) for name in UNREMOVABLE_FACTORIES):
        return RefreshReport(build_index(archive, version, like=active), len(added_ids), len(removed), rebuilt=True)
    index = active.index
    if len(removed):
        index.remove_ids(faiss.IDSelectorBatch(removed))
    if len(added_ids):
        with archive.sessions() as session:
            new = load_archive_vectors(session, version, active.shape, ids=added_ids)  # only the new images' vectors
        index.add_with_ids(active.fused_archive(new), new.ids)
    build = _save(archive, version, _config_of(active), index, active.transforms, active.scales, active.bundle)
    return RefreshReport(build, len(added_ids), len(removed), rebuilt=False)


def _config_of(build: Build) -> BuildConfig:
    return BuildConfig(factory=build.factory, weights=build.weights, shape=build.shape, nprobe=build.nprobe,
                       **{f"{name}_dims": build.transforms[name].output_dim if build.transforms[name].components is not None else None
                          for name in CHANNELS})


def load_build(archive: Archive, row: IndexBuild) -> Build:
    """Read a recorded build's files, refusing one whose checksum no longer matches the DB."""
    data_dir = archive.settings.data_dir
    index_path = data_dir / row.file_path
    transforms_path = data_dir / row.config["transforms_file"]
    for path, checksum in ((index_path, row.checksum), (transforms_path, row.config["transforms_checksum"])):
        if not path.is_file():
            raise IndexBuildError(f"index build {row.id} is missing its file {path.name}: run `s2m index build`")
        if file_sha256(path) != checksum:
            raise IndexBuildError(f"index build {row.id}'s file {path.name} does not match its recorded checksum: run `s2m index build`")
    with np.load(transforms_path, allow_pickle=False) as arrays:
        transforms = {name: ChannelTransform.from_arrays(dict(arrays), name) for name in CHANNELS}
    config = row.config
    return Build(
        build_id=row.id,
        version=row.model_version,
        index=faiss.read_index(str(index_path)),
        transforms=transforms,
        scales={name: float(value) for name, value in config["scales"].items()},
        weights=ChannelWeights(**config["weights"]),
        shape=ShapeConfig(**config["shape"]),
        factory=row.factory,
        nprobe=int(config["nprobe"]),
        created_at=row.created_at,
        bundle=config.get("bundle"),
    )


def activate_build(archive: Archive, build_id: int) -> IndexBuild:
    """Make a finished build the active one (e.g. a new bundle's, written beside the active one with
    `activate=False`); its files are read and checked first, so a damaged build is refused and the
    active one stays. Every replica moves to it on its next search batch (api/service.py)."""
    with archive.sessions() as session:
        row = session.get(IndexBuild, build_id)
    if row is None or row.status not in ("ready", "retired", "active"):
        raise UnusableBuildError(f"there is no finished index build {build_id} (`s2m index build --no-activate` prints the id it wrote)")
    try:
        load_build(archive, row)
    except IndexBuildError as error:
        raise UnusableBuildError(f"{error}; the active build stays") from None
    with session_scope(archive.sessions) as session:
        row = store.activate_index_build(session, build_id)
    prune_retired_builds(archive)
    return row


def load_active_build(archive: Archive) -> Build | None:
    with archive.sessions() as session:
        row = store.active_index_build(session)
    return None if row is None else load_build(archive, row)


def set_weights(archive: Archive, weights: ChannelWeights) -> IndexBuild:
    """Change the active build's channel weights in the DB (no file is rewritten: they are query-side)."""
    with session_scope(archive.sessions) as session:
        row = store.active_index_build(session)
        if row is None:
            raise NoActiveBuildError()
        row.config = {**row.config, "weights": asdict(weights)}
        return row


@dataclass(frozen=True)
class IndexStatus:
    build_id: int | None
    version: str | None
    factory: str | None
    vector_count: int
    weights: dict[str, float]
    created_at: datetime | None
    live_images: int
    not_indexed: int


def index_status(archive: Archive) -> IndexStatus:
    with archive.sessions() as session:
        live = np.array(store.live_image_ids(session), dtype=np.int64)
        row = store.active_index_build(session)
    if row is None:
        return IndexStatus(None, None, None, 0, {}, None, len(live), len(live))
    build = load_build(archive, row)
    return IndexStatus(
        build_id=row.id, version=row.model_version, factory=row.factory, vector_count=build.ntotal,
        weights=asdict(build.weights), created_at=row.created_at, live_images=len(live),
        not_indexed=len(np.setdiff1d(live, build.ids())),
    )


def active_build_id(session: Session) -> int | None:
    """The id of the active build (cheap: what the engine polls to notice a new build)."""
    return session.scalar(select(IndexBuild.id).where(IndexBuild.status == "active"))
