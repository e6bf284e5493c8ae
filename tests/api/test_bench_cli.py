"""`s2m bench` at tiny sizes: one table with every section's rows, a JSON of positive figures, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.settings import usable_cores
from evaluation.bench.proxy import nginx_binary

TINY = ["--archive", "8", "--stage-images", "4", "--batch-size", "4", "--queries", "2", "--faiss-sizes", "1000",
        "--clients", "1,2", "--requests", "2", "--batching", "on", "--train-steps", "2"]


def test_a_tiny_bench_prints_one_table_of_every_section_and_writes_its_json(tmp_path) -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (scripts/ensure-nginx.sh installs Debian's package)")
    report = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", *TINY, "--replicas", "2", "--work", str(tmp_path / "work"),
                                      "--json", str(report)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "cores" in lines[0] and "thread" in lines[0]
    assert lines[1].startswith("bundle: ") and "version " in lines[1]
    assert lines[2].startswith("command: s2m bench ") and "--faiss-sizes 1000" in lines[2] and "--skip ''" in lines[2]
    table = [line.split(" | ") for line in lines if line.startswith("| ") and not line.startswith("| stage")]
    assert {row[0].lstrip("| ") for row in table} == {"archive", "search", "faiss", "service", "train"}
    assert sum(line.startswith("| stage | setting | figure | unit |") for line in lines) == 1
    data = json.loads(report.read_text())
    assert data["meta"]["bundle_version"] and data["meta"]["machine"]["cores"] >= 1
    assert len(data["rows"]) == len(table)
    settings = {row["setting"] for row in data["rows"]}
    assert {"E step, batch 8, CPU time", "H step, batch 8: L_sim forward"} <= settings
    assert {"s_forward, batch 4", "total p50, Flat, 8 images", "1,000 Flat p50"} <= settings
    assert f"2 replicas behind nginx, batching on, 2 clients ({usable_cores()} at once each, H's T)" in settings
    assert [(row["replicas"], row["clients"]) for row in data["service"]] == [(2, 1), (2, 2)]
    errors = [row for row in data["rows"] if row["setting"].endswith("errors")]
    assert len(errors) == 2 and all(row["figure"] == 0 for row in errors)
    assert all(row["figure"] > 0 for row in data["rows"] if row not in errors), data["rows"]
    assert data["archive_end_to_end"]["images"] == 8
    signs = data["signs"]  # the shipped bundle carries sign directions: what applying them all costs a query
    assert signs["signs"] >= 2 and 0 < signs["apply_ms"]["p50"] <= signs["apply_ms"]["p95"]
    assert signs["apply_ms"]["p50"] < signs["total_ms_with"]["p50"], "the signs' own work is a part of the query"
    rows = {row["setting"]: row for row in data["rows"] if "signs" in row["setting"]}
    assert len(rows) == 4 and all(row["unit"] == "ms" and row["stage"] == "search" for row in rows.values())
    assert "signs applied" in result.stdout


@pytest.mark.parametrize("option", [["--faiss-sizes", "10k"], ["--faiss-sizes", "10"], ["--skip", "gpu"],
                                    ["--clients", "0"], ["--batching", "sometimes"], ["--replicas", "0"]])
def test_bad_input_is_one_line_and_exit_2(tmp_path, option) -> None:
    result = CliRunner().invoke(app, ["bench", *option, "--work", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert result.stdout == "" and not any(tmp_path.iterdir())
