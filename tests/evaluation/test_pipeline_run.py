"""`evaluation.pipeline_run` (benchmarks/bench_pipeline.py): one report over several sketch folders, the grid of the first."""

from __future__ import annotations

from PIL import Image

from evaluation.pipeline_run import run_pipeline_eval
from generation.presets import SHIPPED_BUNDLE
from phantoms.dataset import generate_dataset
from phantoms.preview import SketchStyle, write_sketch_folder


def test_each_sketch_folder_is_scored_and_only_the_first_draws_the_grid(tmp_path) -> None:
    data = generate_dataset(tmp_path / "heldout", 2, 64, 1)
    folders = {style.value: tmp_path / style.value for style in (SketchStyle.freehand, SketchStyle.contour)}
    for style, folder in folders.items():
        write_sketch_folder(data, folder, SketchStyle(style), seed=1)
    grid = tmp_path / "grid.png"
    report = run_pipeline_eval(SHIPPED_BUNDLE, data, folders, count=2, steps=1, grid=grid)
    assert list(report["results"]) == ["freehand", "contour"]
    for metrics in report["results"].values():
        assert metrics["count"] == 2 and metrics["refinement_steps"] == 1 and metrics["seconds"] >= 0
        assert 0 <= metrics["x0"]["dice"]["mean"] <= 100 and 0 <= metrics["xT"]["dice"]["mean"] <= 100
    assert Image.open(grid).size[0] > Image.open(grid).size[1]  # sketch | x_0 | x_T | reference per case
