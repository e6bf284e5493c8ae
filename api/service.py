"""What the app holds for its lifetime: the archive, the models, the engine, the batcher, the limiter.

The archive, the models and the engine are opened lazily and re-tried on the next request when they
fail (database down, no active build yet), so the process stays up, answers 503 meanwhile and
recovers by itself when they come back. The bundle is opened once per worker, in the app's lifespan:
its query models (E, G, H and C) serve the engine, `/v1/generate` (which needs no index) and the
index refresh, which adds only S, loaded on the first refresh. A sketch search's pictures are kept
in the database (`indexing/pictures.py`), not here, so any replica serves their URLs; each replica
sweeps the old ones now and then.

When the active index build becomes one of another bundle (an upgrade: `s2m index activate`, or
`s2m index build --model NEW`), the next search batch opens that bundle from the folder the build
recorded and a new engine on it, and the replica moves to both at once: batches already running
finish on the build they started on, later ones wait for the move (seconds) instead of failing.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from api.batching import BatchPolicy, MicroBatcher
from api.metrics import Metrics
from api.ratelimit import rate_limiter
from api.settings import ServiceSettings
from formats.errors import ProjectError
from generation.pipeline import QueryModels
from indexing.archive import Archive
from retrieval.engine import BundleChangedError, EngineConfig, EngineError, Query, SearchEngine, SearchResult
from retrieval.percentiles import References

REFRESH_BATCH = 32
SWEEP_SECONDS = 60.0  # how often a replica sweeps the pictures past their retention
MOVE_RETRY_SECONDS = 30.0  # a bundle that could not be opened is tried again after this long (503 meanwhile)

logger = logging.getLogger(__name__)


class ServiceUnavailableError(ProjectError):
    """The database, the index or the models are not there (yet); the request may be retried."""


class RefreshRunningError(ProjectError):
    """A second index refresh while one runs."""


class Service:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.limiter = rate_limiter(settings.archive.database_url, settings.rate_limit_per_minute,
                                    settings.rate_limit_burst, lambda: self.archive().engine)
        # one inference thread per concurrent batch (api/batching.py)
        self.executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="s2m-inference")
        self.batcher: MicroBatcher[Query, SearchResult] = MicroBatcher(
            self._search_batch,
            BatchPolicy(settings.batch_max_size, settings.batch_max_wait_ms / 1000.0, settings.concurrency), self.executor,
            on_batch=self.metrics.batch_size.observe,
        )
        self._archive: Archive | None = None
        self._models: QueryModels | None = None
        self._engine: SearchEngine | None = None
        self._archive_models: Any = None
        self._references: References | None = None
        self._retired: SearchEngine | None = None  # the engine a move replaced (its batches may still run)
        self._failed_moves: dict[str, float] = {}  # bundle version -> when to try opening it again
        self._opening = threading.Lock()
        self._moving = threading.Lock()
        self._refreshing = threading.Lock()
        self._next_sweep = 0.0

    # --- lifetime ------------------------------------------------------------------------------

    def start_engine(self) -> None:
        """Load the models and then the index now if they can be (otherwise re-tried per request)."""
        if self.settings.device == "cpu":
            import torch

            torch.set_num_threads(self.settings.torch_threads)
        try:
            self.models()
            self.engine()
        except ServiceUnavailableError:
            pass

    async def stop(self) -> None:
        await self.batcher.stop()
        self.executor.shutdown(wait=True)
        for engine in (self._engine, self._retired):
            if engine is not None:
                engine.close()
        if self._archive is not None:
            self._archive.close()

    def archive(self) -> Archive:
        """The archive the API's own reads and writes use (keys, logs, rows)."""
        if self._archive is None:
            with self._opening:
                if self._archive is None:
                    self._archive = _unavailable_unless(lambda: Archive.open(self.settings.archive))
        return self._archive

    def references(self) -> References:
        """Each index build's reference distribution, read once (the hits' percentiles)."""
        if self._references is None:
            with self._opening:
                if self._references is None:
                    self._references = References(self.archive())
        return self._references

    def models(self) -> QueryModels:
        """E, G, H and C of the service's bundle, opened once: what `/v1/generate` needs (no index)."""
        if self._models is None:
            from generation.training import resolve_device

            with self._opening:
                if self._models is None:
                    self._models = _unavailable_unless(
                        lambda: QueryModels.load(self.settings.bundle, resolve_device(self.settings.device)))
        return self._models

    def engine(self) -> SearchEngine:
        """The engine on the active build; a replica started with another bundle than the active build's
        opens the build's own (as a move does), so a restart after an upgrade needs no new S2M_MODEL."""
        if self._engine is None:
            models = self.models()
            with self._opening:
                if self._engine is None:
                    try:
                        engine = self._open_engine(models)
                    except BundleChangedError as change:
                        models = self._bundle_models(change)
                        engine = self._open_engine(models)
                        self._models = models
                    self._engine = engine
        return self._engine

    def _open_engine(self, models: QueryModels) -> SearchEngine:
        """A new engine on the active build with `models` (BundleChangedError passes through as it is)."""
        config = EngineConfig(index_device=self.settings.index_device, steps=self.settings.refine_steps)
        engine = _unavailable_unless(lambda: SearchEngine.open(self.settings.archive, config, models), BundleChangedError)
        self.metrics.watch_index(engine)
        return engine

    def _bundle_models(self, change: BundleChangedError) -> QueryModels:
        """The query models of the bundle folder the active build recorded, checked to be its version; a
        folder that is missing or holds another bundle is 503 (one sentence), tried again after a while."""
        from generation.training import resolve_device

        if change.bundle is None or time.monotonic() < self._failed_moves.get(change.version, 0.0):
            raise ServiceUnavailableError(str(change))
        try:
            models = QueryModels.load(Path(change.bundle), resolve_device(self.settings.device))
            if models.version != change.version:
                raise EngineError(f"the folder holds bundle version {models.version}")
        except (ProjectError, OSError) as error:
            self._failed_moves[change.version] = time.monotonic() + MOVE_RETRY_SECONDS
            logger.warning("could not open the active build's bundle %s (%s)", change.bundle, _sentence(error))
            raise ServiceUnavailableError(str(change)) from error
        return models

    def _move(self, stale: SearchEngine, change: BundleChangedError) -> SearchEngine:
        """Move this replica to the newly active build of another bundle: its models and a new engine, once
        (other inference threads wait here, then take the new engine); batches on `stale` finish on their build."""
        with self._moving:
            if self._engine is not stale and self._engine is not None:
                return self._engine
            models = self._bundle_models(change)
            engine = self._open_engine(models)
            if self._retired is not None:
                self._retired.close()
            self._models, self._engine, self._archive_models, self._retired = models, engine, None, stale
        logger.info("moved to index build %d of bundle version %s", engine.build.build_id, engine.version)
        return engine

    @property
    def engine_loaded(self) -> bool:
        return self._engine is not None

    # --- work on the inference thread ----------------------------------------------------------

    def _search_batch(self, queries: list[Query]) -> list[SearchResult]:
        engine = self.engine()
        try:
            engine.reload_if_changed()
        except BundleChangedError as change:
            engine = self._move(engine, change)
        results = engine.search_many(queries)
        for name, ms in results[0].timings_ms.items():
            self.metrics.stage_seconds.labels(stage=name).observe(ms / 1000.0)
        return results

    async def run(self, function: Any, *args: Any) -> Any:
        """`function(*args)` on the inference thread (serialised with the search batches)."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def refresh_index(self) -> Any:
        """Embed images added since the active build, refresh it and swap the engine to the new build.

        Runs on its own thread, not the inference one: searches go on, on the old build, meanwhile. It
        uses the engine's own C and E; S is loaded on the first refresh and kept."""
        from indexing.prepare import embed_and_refresh
        from indexing.vectors import ArchiveModels

        if not self._refreshing.acquire(blocking=False):
            raise RefreshRunningError("an index refresh is already running; try again when it has finished")
        try:
            engine = self.engine()
            if self._archive_models is None:
                self._archive_models = ArchiveModels.around(engine.models)
            report = embed_and_refresh(engine.archive, self._archive_models, batch_size=REFRESH_BATCH)
            engine.reload_if_changed()
            return report
        finally:
            self._refreshing.release()

    # --- the pictures of past sketch searches ------------------------------------------------

    def sweep_pictures_when_due(self, session: Session) -> None:
        """Delete the pictures past their retention, at most once per SWEEP_SECONDS per replica (off the
        search's own transaction: a failed sweep is a warning and the next one tries again)."""
        from sqlalchemy.exc import SQLAlchemyError

        from indexing.pictures import sweep_pictures

        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        try:
            with session.begin():
                removed = sweep_pictures(session, self.settings.pictures)
        except SQLAlchemyError as error:
            logger.warning("the sweep of old query pictures failed (%s); the next one tries again", type(error).__name__)
            return
        if removed:
            logger.info("swept the pictures of %d past queries", removed)


def _unavailable_unless(open_: Any, passing: type[BaseException] | tuple[type[BaseException], ...] = ()) -> Any:
    """`open_()`, its foreseen failures (database down, no build, bundle mismatch) as ServiceUnavailableError;
    the `passing` ones as they are."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return open_()
    except passing:
        raise
    except (ProjectError, SQLAlchemyError, OSError) as error:
        raise ServiceUnavailableError(_sentence(error)) from error


def _sentence(error: BaseException) -> str:
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(error, SQLAlchemyError):
        return "the archive database is unavailable"
    return " ".join(str(error).split()) or type(error).__name__
