"""The data benchmarks behind benchmarks/phantom_speed.py and ingest_speed.py: what they count and what they leave."""

from __future__ import annotations

import tempfile
from pathlib import Path

from evaluation.bench.data_speed import generation_run, ingest_run
from phantoms.dataset import generate_dataset


def _temporary_folders(prefix: str) -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{prefix}*"))


def test_a_generation_run_times_the_cases_it_rendered_and_removes_them() -> None:
    before = _temporary_folders("phantom-bench-")
    run = generation_run(count=3, size=32, workers=1, seed=0, dicom=False)
    assert run["workers"] == 1 and abs(run["images_per_s"] * run["wall_s"] - 3) < 1e-6
    assert run["cpu_ms_per_image"] > 0
    assert _temporary_folders("phantom-bench-") == before


def test_an_ingest_run_counts_every_image_and_its_masks_then_re_ingests_nothing(tmp_path) -> None:
    dataset = generate_dataset(tmp_path / "phantoms", 4, 32, 0)
    before = _temporary_folders("ingest-bench-")
    run = ingest_run("sqlite", dataset, batch_size=2)
    assert run["added"] == 4 and run["annotations"] >= 4 * 3  # uvula, wall, tongue and the tonsils of each case
    assert run["images_per_s"] > 0 and run["reingest_images_per_s"] > 0
    assert _temporary_folders("ingest-bench-") == before
