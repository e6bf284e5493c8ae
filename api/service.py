"""What the app holds for its lifetime: the archive, the models, the engine, the batcher, the limiter.

The archive, the models and the engine are opened lazily and re-tried on the next request when they
fail (database down, no active build yet), so the process stays up, answers 503 meanwhile and
recovers by itself when they come back. The bundle is opened once per worker, in the app's lifespan:
its query models (E, G, H and C) serve the engine, `/v1/generate` (which needs no index) and the
index refresh, which adds only S, loaded on the first refresh. A sketch search's pictures are kept
in the database (`indexing/pictures.py`), not here, so any replica serves their URLs; each replica
sweeps the old ones now and then.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.orm import Session

from api.batching import BatchPolicy, MicroBatcher
from api.metrics import Metrics
from api.ratelimit import rate_limiter
from api.settings import ServiceSettings
from formats.errors import ProjectError
from generation.pipeline import QueryModels
from indexing.archive import Archive
from retrieval.engine import EngineConfig, Query, SearchEngine, SearchResult
from retrieval.percentiles import References

REFRESH_BATCH = 32
SWEEP_SECONDS = 60.0  # how often a replica sweeps the pictures past their retention

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
        self._opening = threading.Lock()
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
        if self._engine is not None:
            self._engine.close()
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
        if self._engine is None:
            models = self.models()
            with self._opening:
                if self._engine is None:
                    config = EngineConfig(index_device=self.settings.index_device, steps=self.settings.refine_steps)
                    self._engine = _unavailable_unless(lambda: SearchEngine.open(self.settings.archive, config, models))
                    self.metrics.watch_index(self._engine)
        return self._engine

    @property
    def engine_loaded(self) -> bool:
        return self._engine is not None

    # --- work on the inference thread ----------------------------------------------------------

    def _search_batch(self, queries: list[Query]) -> list[SearchResult]:
        engine = self.engine()
        engine.reload_if_changed()
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


def _unavailable_unless(open_: Any) -> Any:
    """`open_()`, its foreseen failures (database down, no build, bundle mismatch) as ServiceUnavailableError."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return open_()
    except (ProjectError, SQLAlchemyError, OSError) as error:
        raise ServiceUnavailableError(_sentence(error)) from error


def _sentence(error: BaseException) -> str:
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(error, SQLAlchemyError):
        return "the archive database is unavailable"
    return " ".join(str(error).split()) or type(error).__name__
