"""A query of sketch + clinical signs through the engine and `s2m search` (issue 38)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formats.signs import labels_from_row
from generation.signs import SignError
from indexing.archive import Archive
from indexing.fused_index import build_index
from indexing.vectors import LATENT
from retrieval.engine import EngineConfig, Query, SearchEngine
from tests.retrieval.test_search_engine import REPO, _contours


@pytest.fixture
def engine(embedded: Archive, archive_models, signs_bundle: Path):  # type: ignore[no-untyped-def]
    build_index(embedded, archive_models.version)  # built with the shipped bundle: the signs leave its version alone
    opened = SearchEngine.open(embedded.settings, EngineConfig(bundle=signs_bundle, device="cpu"))
    yield opened
    opened.close()


def _exudate_by_file(dataset: Path) -> dict[str, bool]:
    with (dataset / "metadata.csv").open(newline="") as handle:
        return {row["file"]: labels_from_row(row)["exudate"] for row in csv.DictReader(handle)}


def test_a_sign_query_edits_the_picture_in_w_and_pulls_the_ranking_towards_the_sign(engine: SearchEngine,
                                                                                    phantom_archive: Path) -> None:
    sketch = _contours(phantom_archive, "000003")
    plain, signed = engine.search_many([Query(sketch, k=16), Query(sketch, k=16, signs={"exudate": 1.0})])
    assert plain.signs == ()
    (applied,) = signed.signs
    assert applied.sign == "exudate" and applied.strength == 1.0 and applied.w_shift > 0 and applied.appearance_shift > 0
    assert not np.array_equal(plain.image, signed.image), "the W edit changes what G and H draw"
    exudate = _exudate_by_file(phantom_archive)
    assert 0 < sum(exudate.values()) < len(exudate)

    def gap(result) -> float:  # type: ignore[no-untyped-def]
        """Mean appearance cosine of the archive's exudate cases minus that of the others."""
        scores = {hit.original_name: hit.channels.appearance for hit in result.hits}
        return (np.mean([s for name, s in scores.items() if exudate[name]])
                - np.mean([s for name, s in scores.items() if not exudate[name]]))

    assert len(signed.hits) == 16 and gap(signed) > gap(plain) + 0.01, (gap(plain), gap(signed))
    build = engine.build
    assert engine.weights_for(Query(sketch), {}, build) == build.weights
    assert engine.weights_for(Query(sketch, signs={"exudate": 1.0}), {"exudate": 1.0}, build).appearance == pytest.approx(
        engine.models.signs.appearance_weight), "a sign query weighs the appearance channel it edits"
    chosen = engine.models.signs
    with pytest.MonkeyPatch.context() as patch:  # a latent weight chosen for sign queries applies to them only
        patch.setattr(engine, "models", dataclasses.replace(engine.models, signs=chosen.with_chosen(
            chosen.routes, chosen.defaults, chosen.appearance_weight, {}, latent_weight=0.25)))
        assert engine.weights_for(Query(sketch, signs={"exudate": 1.0}), {"exudate": 1.0}, build).latent == 0.25
        assert engine.weights_for(Query(sketch), {}, build) == build.weights
    with pytest.MonkeyPatch.context() as patch:  # the latent drops the signs' W directions for sign queries only
        patch.setattr(engine, "models", dataclasses.replace(engine.models, signs=chosen.with_chosen(
            chosen.routes, chosen.defaults, chosen.appearance_weight, {}, latent_outline_only=True)))
        plain_again, outlined = engine.search_many([Query(sketch, k=16), Query(sketch, k=16, signs={"exudate": 1.0})])
        directions = chosen.w.numpy()
        assert np.abs(directions @ outlined.vectors[LATENT]).max() < 1e-5
        assert np.abs(directions @ plain_again.vectors[LATENT]).max() > 1e-3
        assert np.array_equal(plain_again.vectors[LATENT], plain.vectors[LATENT])
    zero = engine.search(sketch, k=16, signs={"exudate": 0.0})
    assert [hit.image_id for hit in zero.hits] != [] and zero.signs[0].w_shift == 0.0


def test_unknown_signs_and_strengths_out_of_range_are_refused_before_any_work(engine: SearchEngine,
                                                                             phantom_archive: Path) -> None:
    sketch = _contours(phantom_archive, "000003")
    with pytest.raises(SignError, match="unknown sign 'pus'; known signs: exudate, erythema"):
        engine.search(sketch, signs={"pus": 1.0})
    with pytest.raises(SignError, match="from -1 .absent. to 1"):
        engine.search(sketch, signs={"exudate": 1.5})
    with pytest.raises(ValueError, match="query by example"):
        Query(None, like=1, signs={"exudate": 1.0})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the DB side runs on both backends above
def test_s2m_search_applies_signs_and_refuses_unknown_ones_with_exit_2(embedded: Archive, archive_models,  # type: ignore[no-untyped-def]
                                                                      signs_bundle: Path, phantom_archive: Path,
                                                                      tmp_path: Path) -> None:
    build_index(embedded, archive_models.version)
    settings = embedded.settings
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "S2M_DATA_DIR": str(settings.data_dir),
           "S2M_DATABASE_URL": settings.database_url, "S2M_PSEUDONYM_KEY": settings.pseudonym_key.decode()}
    s2m = [sys.executable, "-c", "from api.cli import app; app()", "search", "--model", str(signs_bundle), "--device", "cpu"]
    sketch = tmp_path / "000003.png"
    Image.fromarray(_contours(phantom_archive, "000003", 256)).save(sketch)
    found = subprocess.run([*s2m, str(sketch), "--k", "3", "--json", "--sign", "exudate=1", "--sign", "erythema=0.5"],
                           env=env, capture_output=True, text=True, timeout=180)
    assert found.returncode == 0, found.stderr[-2000:]
    (record,) = json.loads(found.stdout)
    assert {(s["sign"], s["strength"]) for s in record["signs"]} == {("exudate", 1.0), ("erythema", 0.5)}
    assert len(record["hits"]) == 3
    for bad, message in (("pus=1", "unknown sign 'pus'; known signs: exudate, erythema"), ("exudate=2", "from -1 (absent) to 1"), ("exudate=lots", "NAME=STRENGTH")):
        refused = subprocess.run([*s2m, str(sketch), "--sign", bad], env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
