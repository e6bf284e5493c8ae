"""The query engine and `s2m search` on a small archive embedded with the shipped bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from generation.presets import SHIPPED_BUNDLE
from indexing import store
from indexing.archive import Archive
from indexing.fused_index import BuildConfig, build_index
from indexing.models import Image as ImageRow
from retrieval.engine import EngineConfig, Query, SearchEngine
from retrieval.filters import Filters

REPO = Path(__file__).resolve().parents[2]


def _contours(dataset: Path, stem: str, side: int = 64) -> np.ndarray:
    """The true-mask contour sketch of a phantom, drawn at `side` px."""
    import cv2

    from formats.contours import contour_sketch

    mask = np.asarray(Image.open(dataset / "masks" / f"{stem}.png"))
    return contour_sketch(cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST))


@pytest.fixture
def engine(embedded: Archive, archive_models):  # type: ignore[no-untyped-def]
    build_index(embedded, archive_models.version)
    opened = SearchEngine.open(embedded.settings, EngineConfig(bundle=SHIPPED_BUNDLE, device="cpu"))
    yield opened
    opened.close()


def test_one_engine_start_reads_each_network_file_once_and_s_only_where_sketches_are_synthesised(
        embedded: Archive, archive_models, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import generation.bundle as bundle_module
    from indexing.vectors import ArchiveModels

    build_index(embedded, archive_models.version)
    reads: list[str] = []
    real = bundle_module.load_file
    monkeypatch.setattr(bundle_module, "load_file", lambda path, device="cpu": reads.append(Path(path).name) or real(path, device=device))
    opened = SearchEngine.open(embedded.settings, EngineConfig(bundle=SHIPPED_BUNDLE, device="cpu"))
    try:
        assert sorted(reads) == ["embedder.safetensors", "encoder.safetensors", "generator.safetensors", "refiner.safetensors"]
        archive_side = ArchiveModels.around(opened.models)  # what the service's index refresh embeds with
        assert sorted(reads)[-1] == "synthesizer.safetensors" and len(reads) == 5, "S read once, C and E not again"
        assert archive_side.embedder is opened.embedder and archive_side.encoder is opened.pipeline.encoder
        assert archive_side.version == opened.version == archive_models.version
    finally:
        opened.close()


def test_a_canonical_sketch_passes_through_the_engine_and_is_never_canonicalised_again(
        engine: SearchEngine, phantom_archive: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from formats.sketch import CanonicalSketch

    drawing = _contours(phantom_archive, "000004", side=256)
    expected = engine.search(drawing, k=5)
    canonical = CanonicalSketch.of(drawing, engine.resolution)
    monkeypatch.setattr("retrieval.engine.canonical_sketch", lambda *args, **kwargs: pytest.fail("canonicalised again"))
    passed = engine.search(canonical, k=5)
    assert [hit.image_id for hit in passed.hits] == [hit.image_id for hit in expected.hits]
    assert [hit.score for hit in passed.hits] == [hit.score for hit in expected.hits]
    assert np.array_equal(passed.sketch, canonical.pixels)
    with pytest.raises(ValueError, match="canonical sketch of 32 px reached an engine at 64 px"):
        engine.search(CanonicalSketch.of(drawing, 32))


def _rows(archive: Archive) -> list[ImageRow]:
    with archive.sessions() as session:
        return list(session.scalars(select(ImageRow).order_by(ImageRow.id)))


def test_filters_never_return_a_filtered_row(engine: SearchEngine, embedded: Archive, phantom_archive: Path) -> None:
    rows = _rows(embedded)
    diagnosis = rows[0].diagnosis
    patient = rows[1].patient_ref
    dates = sorted(row.acquired_at for row in rows if row.acquired_at)
    middle = dates[len(dates) // 2]
    with embedded.sessions.begin() as session:
        store.soft_delete_image(session, rows[2].id)
    sketch = _contours(phantom_archive, "000002")
    cases = [
        (Filters(diagnoses=(diagnosis,)), lambda r: r.diagnosis == diagnosis),
        (Filters(exclude_patients=(patient,)), lambda r: r.patient_ref != patient),
        (Filters(patients=(patient,)), lambda r: r.patient_ref == patient),
        (Filters(acquired_from=middle), lambda r: r.acquired_at is not None and r.acquired_at >= middle),
        (Filters(acquired_to=middle, diagnoses=(diagnosis,)), lambda r: r.acquired_at <= middle and r.diagnosis == diagnosis),
        (Filters(findings=tuple(rows[3].findings[:1])), lambda r: set(rows[3].findings[:1]) <= set(r.findings)),
    ]
    results = engine.search_many([Query(sketch, k=16, filters=filters) for filters, _ in cases])
    for (filters, passes), result in zip(cases, results):
        allowed = {row.id for row in rows if passes(row) and row.id != rows[2].id}
        returned = {hit.image_id for hit in result.hits}
        assert returned == allowed, filters  # every passing live row (k is the archive size), and only those
        assert rows[2].id not in returned
    unfiltered = engine.search(sketch, k=16)
    assert rows[2].id not in {hit.image_id for hit in unfiltered.hits}  # deleted, not yet refreshed: never returned
    assert len(unfiltered.hits) == len(rows) - 1


def test_own_contours_rank_first_at_any_canvas_size_and_batching_changes_nothing(engine: SearchEngine, phantom_archive: Path) -> None:
    stems = ["000001", "000005", "000009", "000013"]
    case_of = {row.id: row.case_ref for row in _rows(engine.archive)}
    queries = [Query(_contours(phantom_archive, stem, side), k=3) for stem in stems for side in (64, 512)]
    batched = engine.search_many(queries)
    for query, result in zip(queries, batched):
        assert set(result.timings_ms) == {"sketch", "pipeline", "embed", "filter", "faiss", "rerank", "hydrate"}
        assert result.image.shape == (64, 64, 3) and result.sketch.shape == (64, 64)
    for index, stem in enumerate(stems):
        for result in batched[2 * index : 2 * index + 2]:
            assert case_of[result.hits[0].image_id].endswith(f"-{int(stem):06d}")
    alone = engine.search(queries[0].sketch, k=3)
    assert [h.image_id for h in alone.hits] == [h.image_id for h in batched[0].hits]
    np.testing.assert_allclose([h.score for h in alone.hits], [h.score for h in batched[0].hits], rtol=1e-4)


def test_a_new_build_is_picked_up_without_dropping_queries_in_flight(engine: SearchEngine, embedded: Archive,
                                                                      archive_models, phantom_archive: Path) -> None:  # type: ignore[no-untyped-def]
    sketch = _contours(phantom_archive, "000004")
    before = engine.build.build_id
    assert engine.reload_if_changed() is False
    errors: list[BaseException] = []
    results = []

    def search_repeatedly() -> None:
        try:
            for _ in range(3):
                results.append(engine.search(sketch, k=2))
        except BaseException as error:  # noqa: BLE001 (the test reports it)
            errors.append(error)

    threads = [threading.Thread(target=search_repeatedly) for _ in range(3)]
    for thread in threads:
        thread.start()
    new = build_index(embedded, archive_models.version, BuildConfig(appearance_dims=8, shape_dims=8))
    assert engine.reload_if_changed() is True
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 9
    assert {r.build_id for r in results} <= {before, new.id}
    assert engine.build.build_id == new.id and engine.search(sketch, k=2).build_id == new.id


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the DB side runs on both backends above
def test_s2m_search_finds_an_archive_image_from_its_own_contours(embedded: Archive, phantom_archive: Path, tmp_path: Path) -> None:
    settings = embedded.settings
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "S2M_DATA_DIR": str(settings.data_dir),
           "S2M_DATABASE_URL": settings.database_url, "S2M_PSEUDONYM_KEY": settings.pseudonym_key.decode()}
    s2m = [sys.executable, "-c", "from api.cli import app; app()"]
    built = subprocess.run([*s2m, "index", "build", "--no-progress", "--device", "cpu"], env=env, capture_output=True, text=True, timeout=180)
    assert built.returncode == 0, built.stderr[-2000:]
    folder = tmp_path / "sketches"
    folder.mkdir()
    for stem in ("000003", "000010"):
        Image.fromarray(_contours(phantom_archive, stem, 256)).save(folder / f"{stem}.png")
    sheet = tmp_path / "sheet.png"
    found = subprocess.run([*s2m, "search", str(folder), "--k", "3", "--json", "--sheet", str(sheet), "--device", "cpu"],
                           env=env, capture_output=True, text=True, timeout=180)
    assert found.returncode == 0, found.stderr[-2000:]
    records = json.loads(found.stdout)
    assert [r["sketch"] for r in records] == ["000003.png", "000010.png"]
    for record in records:
        top = record["hits"][0]
        assert top["rank"] == 1 and top["case_id"].endswith(f"-{int(record['sketch'][:6]):06d}")
        assert top["original_file_name"] == record["sketch"]  # a phantom's own (synthetic) name is kept
        assert set(top["channels"]) == {"appearance", "latent", "shape"} and top["sop_uid"]
    with Image.open(sheet) as picture:
        assert picture.size == (5 * 96, 2 * 96)
    blank = tmp_path / "blank.png"
    Image.new("L", (128, 128), 255).save(blank)
    refused = subprocess.run([*s2m, "search", str(blank)], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "blank" in refused.stderr and "Traceback" not in refused.stderr
    # refined by marks: the case marked right first, the one marked not this gone, the rest searched again
    one = folder / "000003.png"
    shown = [hit["image_id"] for hit in records[0]["hits"]]
    marked = subprocess.run([*s2m, "search", str(one), "--k", "3", "--json", "--device", "cpu", "--like", str(shown[2]),
                             "--unlike", str(shown[0])], env=env, capture_output=True, text=True, timeout=180)
    assert marked.returncode == 0, marked.stderr[-2000:]
    refined = [hit["image_id"] for hit in json.loads(marked.stdout)[0]["hits"]]
    assert refined[0] == shown[2] and shown[0] not in refined and len(refined) == 3
    stranger = subprocess.run([*s2m, "search", str(one), "--k", "3", "--like", "987654"], env=env, capture_output=True,
                              text=True, timeout=180)
    assert stranger.returncode == 2 and "987654" in stranger.stderr and "Traceback" not in stranger.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # device placement is no DB matter
def test_an_index_device_the_machine_lacks_falls_back_to_the_cpu_and_filtered_queries_stay_there(
        embedded: Archive, archive_models, phantom_archive: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    import dataclasses
    import logging

    import faiss

    from indexing.faiss_device import PlacedIndex

    build_index(embedded, archive_models.version)
    with caplog.at_level(logging.INFO, logger="indexing.faiss_device"):
        opened = SearchEngine.open(embedded.settings, EngineConfig(bundle=SHIPPED_BUNDLE, device="cpu", index_device="cuda"))
    try:
        assert opened.build.placed.device == "cpu"
        assert any("searches on the CPU" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        sketch = _contours(phantom_archive, "000004")
        expected = [hit.image_id for hit in opened.search(sketch, k=3).hits]

        class StandIn:  # stands for the GPU copy (none here): answers like the CPU index, counts its calls
            calls = 0

            def search(self, queries, count):  # type: ignore[no-untyped-def]
                StandIn.calls += 1
                return opened.build.index.search(queries, count, params=faiss.SearchParameters())

        opened._build = dataclasses.replace(opened.build, placed=PlacedIndex(gpu_index=StandIn()))
        assert [hit.image_id for hit in opened.search(sketch, k=3).hits] == expected and StandIn.calls == 1
        diagnosis = _rows(embedded)[0].diagnosis
        filtered = opened.search(sketch, k=3, filters=Filters(diagnoses=(diagnosis,)))
        assert StandIn.calls == 1 and all(hit.case.diagnosis == diagnosis for hit in filtered.hits)  # on the CPU copy
    finally:
        opened.close()
