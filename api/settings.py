"""The HTTP service's settings, read once from the environment into a frozen dataclass.

Beside the archive's own (`indexing.settings`), all optional:
- `S2M_MODEL` (bundle folder, default the shipped `models/small`), `S2M_DEVICE` (cpu, cuda, auto).
- `S2M_MAX_UPLOAD_BYTES`: the largest request body, counted while it streams in (default 5 MiB).
- `S2M_BATCH_MAX_SIZE`, `S2M_BATCH_MAX_WAIT_MS`: the search micro-batcher (as Triton's and Ray
  Serve's max batch size and batch wait timeout); size 1 turns batching off.
- `S2M_BATCH_CONCURRENCY`: batches that run at once, each on its own inference thread with
  cores / concurrency torch threads (default: one per usable core on the CPU, one on a GPU).
- `S2M_REFINE_STEPS`: H's refinement steps T per search and generation (default: the T H was trained
  with); fewer steps trade the generated image's quality for latency (docs/benchmarks.md measures both).
- `S2M_RATE_LIMIT_PER_MINUTE`, `S2M_RATE_LIMIT_BURST`: each API key's token bucket.
- `S2M_CORS_ORIGINS`: comma-separated origins a browser may call from (none by default).
- `S2M_VIEWER_URL`, `S2M_WADO_URL`: templates of a hit's viewer and WADO-RS retrieve URLs with
  `{study}`, `{series}`, `{sop}` (e.g. OHIF `/viewer?StudyInstanceUIDs={study}`; no WADO URL by default).
- `S2M_VIEWER_PORT`: the port the OHIF viewer is served on (`s2m serve --viewer-port` sets it); the
  service's `/viewer` links then lead there, on the host the browser reached the service by.
- `S2M_EXAMPLE_DIAGNOSIS`: the diagnosis of the tracing template `GET /v1/images/example` offers.
- `S2M_PICTURES_KEPT`, `S2M_PICTURES_MAX_AGE_HOURS`: how many of the most recent sketch searches keep
  their pictures (sketch, x_0 .. x_T) in the database, and for how many hours at most (default 2000, 24).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from generation.presets import SHIPPED_BUNDLE
from indexing.pictures import PictureRetention
from indexing.settings import Settings, SettingsError, positive_int

WEB_DIR = Path(__file__).resolve().parent / "web"
DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_REFINE_STEPS = 10


def _bounded(environ: Mapping[str, str], name: str, parse: Callable[[str], float], kind: str,
             high: float, unit: str = "") -> float | None:
    """The variable `name` parsed and within 0 .. `high`, or None when unset; else one SettingsError sentence."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = parse(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {kind}, got {raw!r}") from None
    if not 0 <= value <= high:
        raise SettingsError(f"{name} must be between 0 and {high:g}{unit}, got {raw!r}")
    return value


def _milliseconds(environ: Mapping[str, str], name: str, default: float) -> float:
    value = _bounded(environ, name, float, "a number of milliseconds", 1000, " ms")
    return default if value is None else value


def _refine_steps(environ: Mapping[str, str]) -> int | None:
    value = _bounded(environ, "S2M_REFINE_STEPS", int, "a whole number of steps", MAX_REFINE_STEPS)
    return None if value is None else int(value)


def _port(environ: Mapping[str, str], name: str) -> int | None:
    value = _bounded(environ, name, int, "a port number", 65535)
    return None if value is None or value == 0 else int(value)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class ServiceSettings:
    archive: Settings
    bundle: Path = SHIPPED_BUNDLE
    device: str = "cpu"
    index_device: str = "auto"  # where the FAISS index searches (indexing/faiss_device.py)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    batch_max_size: int = 16
    batch_max_wait_ms: float = 5.0
    batch_concurrency: int = 0  # 0: one per usable core on the CPU, one on a GPU (`concurrency`)
    refine_steps: int | None = None  # H's steps T (None: what H was trained with)
    rate_limit_per_minute: int = 1200
    rate_limit_burst: int = 120
    cors_origins: tuple[str, ...] = ()
    viewer_url: str = "/viewer?StudyInstanceUIDs={study}"
    wado_url: str | None = None
    viewer_port: int | None = None  # where `s2m serve --viewer-port` serves OHIF (api/routes/viewer.py)
    example_diagnosis: str = "normal"
    thumbnail_side: int = 128
    pictures: PictureRetention = PictureRetention()  # sketch searches' pictures kept in the database
    web_dir: Path = field(default=WEB_DIR)

    @property
    def concurrency(self) -> int:
        """Batches at once: the setting, else one per usable core on the CPU (a CPU batch costs per image
        what single images do, so cores, not batch size, add throughput) and one on a GPU."""
        if self.batch_concurrency:
            return self.batch_concurrency
        return 1 if self.device != "cpu" else usable_cores()  # cuda, or auto (a GPU where one is)

    @property
    def torch_threads(self) -> int:
        """Intra-op threads of each inference thread on the CPU, so the batches share the cores."""
        return max(1, usable_cores() // self.concurrency)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ServiceSettings":
        env = os.environ if environ is None else environ
        origins = tuple(origin.strip() for origin in env.get("S2M_CORS_ORIGINS", "").split(",") if origin.strip())
        return cls(
            archive=Settings.from_env(env),
            bundle=Path(env.get("S2M_MODEL") or SHIPPED_BUNDLE),
            device=env.get("S2M_DEVICE") or "cpu",
            index_device=env.get("S2M_INDEX_DEVICE") or "auto",
            max_upload_bytes=positive_int(env, "S2M_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            batch_max_size=positive_int(env, "S2M_BATCH_MAX_SIZE", cls.batch_max_size),
            batch_max_wait_ms=_milliseconds(env, "S2M_BATCH_MAX_WAIT_MS", cls.batch_max_wait_ms),
            batch_concurrency=positive_int(env, "S2M_BATCH_CONCURRENCY", cls.batch_concurrency),
            refine_steps=_refine_steps(env),
            rate_limit_per_minute=positive_int(env, "S2M_RATE_LIMIT_PER_MINUTE", cls.rate_limit_per_minute),
            rate_limit_burst=positive_int(env, "S2M_RATE_LIMIT_BURST", cls.rate_limit_burst),
            cors_origins=origins,
            viewer_url=env.get("S2M_VIEWER_URL") or cls.viewer_url,
            wado_url=env.get("S2M_WADO_URL") or None,
            viewer_port=_port(env, "S2M_VIEWER_PORT"),
            example_diagnosis=env.get("S2M_EXAMPLE_DIAGNOSIS") or cls.example_diagnosis,
            pictures=PictureRetention(
                count=positive_int(env, "S2M_PICTURES_KEPT", PictureRetention.count),
                max_age=timedelta(hours=positive_int(env, "S2M_PICTURES_MAX_AGE_HOURS", 24)),
            ),
        )
