"""`s2m eval all` on a tiny run writes the report JSON it wrote when the snapshot was taken.

`eval_all_expected.json` is that run's report at commit 7d22518 (the last one with the evaluation in
api/cli), so that moving the evaluation changed no key and no figure, plus the one key added since
(`retrieval.validation_styles`: each seen style's validation rows, which issue 37's bundle
replacement rule reads). Paths and clocks are taken out (`eval_snapshot.normalised`); the run is
deterministic on one CPU, so any other change of a key or a figure is a change of what the evaluation
measures (Inception's FID and KID compare at a looser tolerance, `eval_snapshot.INCEPTION`: their float32
sums differ between CPU instruction sets).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from tests.evaluation.eval_snapshot import TIMING, differences, normalised

EXPECTED = Path(__file__).with_name("eval_all_expected.json")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    """The snapshot was taken with one torch thread: KID's sums over Inception features change in the
    sixth digit with the threads' summation order, whatever ran before in the same process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_eval_all_writes_the_keys_and_figures_of_the_code_before_the_move(tmp_path, pix2pix_small, one_thread) -> None:
    report = tmp_path / "report" / "index.html"
    result = CliRunner().invoke(app, ["eval", "all", "--count", "2", "--archive", "24", "--queries", "4", "--size", "64",
                                      "--canvases", "64,512", "--steps", "2", "--pix2pix", str(pix2pix_small),
                                      "--work", str(tmp_path / "work"), "--report", str(report)])
    assert result.exit_code == 0, result.output
    actual = normalised(json.loads(report.with_suffix(".json").read_text()),
                        {"pix2pix": pix2pix_small, "root": tmp_path, "repo": REPO})
    expected = json.loads(EXPECTED.read_text())
    assert differences(expected, actual) == []
    assert actual["retrieval"]["latency_ms_per_query"]["fused_xT"] == TIMING  # timed rows keep their keys


def test_the_comparison_sees_a_changed_figure_and_a_missing_key() -> None:
    expected = json.loads(EXPECTED.read_text())
    changed = json.loads(EXPECTED.read_text())
    changed["retrieval"]["weights"]["shape"] += 0.01
    del changed["generation"]["table"]["seen"]["sketch2medi"]["ssim"]
    found = differences(expected, changed)
    assert len(found) == 2 and any("weights/shape" in line for line in found) and any("only expected" in line for line in found)
