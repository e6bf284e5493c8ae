"""How fast the data comes in: rendering phantom datasets, and ingesting one into SQLite or PostgreSQL.

`benchmarks/phantom_speed.py` and `benchmarks/ingest_speed.py` print these. Each figure comes with
the CPU time of this process (what the work costs, whatever else runs on a shared machine) and the
load average before it, so that numbers from a busy machine can be told apart.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from indexing.archive import Archive
from indexing.db import make_engine
from indexing.ingest.run import ingest_path
from indexing.settings import Settings
from phantoms.dataset import generate_dataset
from phantoms.render import render_case

PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
BENCH_KEY = b"benchmark-pseudonym-key"


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def render_only_ms(size: int, count: int) -> float:
    """CPU milliseconds to render one case in this process (no files)."""
    render_case(0, 0, size)  # warm caches
    began = time.process_time()
    for index in range(count):
        render_case(0, index, size)
    return (time.process_time() - began) / count * 1000.0


def generation_run(count: int, size: int, workers: int, seed: int, dicom: bool) -> dict[str, float]:
    """One `generate_dataset` into a fresh temporary folder; timings in seconds and images/s."""
    folder = Path(tempfile.mkdtemp(prefix="phantom-bench-"))
    try:
        load = os.getloadavg()[0]
        cpu_before, began = _cpu_seconds(), time.perf_counter()
        generate_dataset(folder / "ds", count, size, seed, workers=workers, dicom=dicom)
        wall = time.perf_counter() - began
        cpu = _cpu_seconds() - cpu_before
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"workers": workers, "wall_s": wall, "images_per_s": count / wall, "cpu_ms_per_image": cpu / count * 1000, "load_before": load}


def ingest_dataset(count: int, size: int, seed: int, workers: int) -> Path:
    """The phantom dataset the ingest benchmark reads, rendered once under data/ and reused."""
    folder = Path("data") / f"bench-ingest-{count}-{size}-{seed}"
    if not (folder / "metadata.csv").is_file():
        generate_dataset(folder, count, size, seed, workers=workers)
    return folder


def ingest_run(backend: str, dataset: Path, batch_size: int) -> dict[str, float]:
    """Ingest `dataset` into a fresh archive on `backend` (sqlite or postgresql), then again (all duplicates)."""
    data_dir = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    pg_name = f"s2m_bench_{uuid.uuid4().hex[:8]}"
    admin = None
    if backend == "postgresql":
        admin = make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{pg_name}"
    else:
        url = f"sqlite:///{data_dir / 'archive.sqlite3'}"
    settings = Settings(data_dir=data_dir, database_url=url, pseudonym_key=BENCH_KEY, ingest_batch_size=batch_size)
    archive = Archive.create(settings)
    try:
        load = os.getloadavg()[0]
        cpu, began = time.process_time(), time.perf_counter()
        report = ingest_path(archive, dataset)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        again_began = time.perf_counter()
        again = ingest_path(archive, dataset)
        again_wall = time.perf_counter() - again_began
        assert again.added == 0 and again.already_present == report.added, "re-ingest must add nothing"
        return {
            "added": report.added,
            "annotations": report.annotations_added,
            "seconds": wall,
            "images_per_s": report.added / wall,
            "cpu_ms_per_image": cpu / max(report.added, 1) * 1000.0,
            "reingest_images_per_s": again.already_present / again_wall,
            "load_before": load,
        }
    finally:
        archive.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            admin.dispose()
