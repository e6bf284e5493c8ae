"""Builds and refreshes of the fused index, on SQLite and PostgreSQL, with the shipped bundle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from sqlalchemy import select

from indexing import store
from indexing.archive import Archive
from indexing.fused_index import (
    INDEX_FOLDER,
    BuildConfig,
    ChannelWeights,
    build_index,
    fuse,
    index_status,
    load_active_build,
    load_archive_vectors,
    load_build,
    refresh_index,
)
from indexing.ingest.run import ingest_path
from indexing.models import IndexBuild
from indexing.vectors import CHANNELS, LATENT, Shard, embed_archive, pending_image_ids

REPO = Path(__file__).resolve().parents[2]
UNCOMPRESSED = BuildConfig(appearance_dims=None, shape_dims=None)


def _live(archive: Archive) -> set[int]:
    with archive.sessions() as session:
        return set(store.live_image_ids(session))


def test_embedding_is_resumable_and_stores_every_channel(embedded: Archive, archive_models) -> None:  # type: ignore[no-untyped-def]
    with embedded.sessions() as session:
        assert pending_image_ids(session, archive_models.version) == []
        ids, latent = store.get_embeddings(session, archive_models.version, LATENT)
    assert set(ids.tolist()) == _live(embedded)
    np.testing.assert_allclose(np.linalg.norm(latent, axis=1), 1.0, atol=1e-5)
    again = embed_archive(embedded, archive_models)
    assert again.embedded == 0 and again.already_done == len(ids)  # stored work is never redone


def test_flat_search_of_the_fused_index_equals_the_weighted_channel_scores(embedded: Archive, archive_models) -> None:  # type: ignore[no-untyped-def]
    row = build_index(embedded, archive_models.version, UNCOMPRESSED)
    build = load_active_build(embedded)
    assert build is not None and build.build_id == row.id and build.ntotal == len(_live(embedded))
    with embedded.sessions() as session:
        vectors = load_archive_vectors(session, archive_models.version, build.shape)
    queries = {name: vectors.channels[name][:3] for name in CHANNELS}  # archive vectors as query stand-ins
    from indexing.shape import query_vectors

    queries["shape"] = query_vectors(vectors.sketches[:3], build.shape)
    weights = ChannelWeights(0.5, 1.0, 2.0)
    fused = fuse(build.transforms, {n: weights.of(n) for n in CHANNELS}, queries, archive_side=False)
    scores, ids = build.index.search(fused, build.ntotal)
    expected = sum(weights.of(n) * build.scales[n] * (queries[n] @ vectors.channels[n].T) for n in CHANNELS)  # [3, N]
    column = {int(i): c for c, i in enumerate(vectors.ids)}
    for row_scores, row_ids, want in zip(scores, ids, expected):
        np.testing.assert_allclose(row_scores, want[[column[int(i)] for i in row_ids]], rtol=1e-4, atol=1e-4)
    assert ids[:, 0].tolist() == vectors.ids[:3].tolist()  # each image's own sketch ranks it first


def test_refresh_after_adding_and_deleting_equals_a_fresh_build(embedded: Archive, archive_models, phantom_archive: Path) -> None:  # type: ignore[no-untyped-def]
    version = archive_models.version
    build_index(embedded, version, BuildConfig(appearance_dims=8, shape_dims=8))
    ingest_path(embedded, phantom_archive.parent / "extra", None, None, progress=False)
    with embedded.sessions.begin() as session:
        deleted = sorted(_live(embedded))[:2]
        for image_id in deleted:
            store.soft_delete_image(session, image_id)
    assert index_status(embedded).not_indexed == 4
    embed_archive(embedded, archive_models)
    previous = load_active_build(embedded)
    report = refresh_index(embedded, version)
    assert (report.added, report.removed, report.rebuilt) == (4, 2, False)
    refreshed = load_active_build(embedded)
    fresh_row = build_index(embedded, version, like=previous)  # a fresh build keeping the same transforms
    fresh = load_active_build(embedded)
    assert fresh.build_id == fresh_row.id != refreshed.build_id
    live = _live(embedded)
    assert set(refreshed.ids().tolist()) == set(fresh.ids().tolist()) == live
    for image_id in sorted(live):
        np.testing.assert_allclose(refreshed.index.reconstruct(image_id), fresh.index.reconstruct(image_id), rtol=1e-6, atol=1e-5)
    status = index_status(embedded)
    assert status.not_indexed == 0 and status.vector_count == len(live)


def test_a_killed_build_leaves_the_previous_build_active_and_readable(embedded: Archive, archive_models) -> None:  # type: ignore[no-untyped-def]
    first = build_index(embedded, archive_models.version)
    settings = embedded.settings
    # a build process killed (SIGKILL) right after its index file is written, before the rename and the DB
    script = (
        "import os, signal, faiss\n"
        "real = faiss.write_index\n"
        "def write_then_die(index, path):\n"
        "    real(index, path)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "faiss.write_index = write_then_die\n"
        "from api.cli import app\n"
        "app(['index', 'build', '--no-progress', '--device', 'cpu'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "S2M_DATA_DIR": str(settings.data_dir),
           "S2M_DATABASE_URL": settings.database_url, "S2M_PSEUDONYM_KEY": settings.pseudonym_key.decode()}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    with embedded.sessions() as session:
        builds = session.scalars(select(IndexBuild)).all()
    assert [(b.id, b.status) for b in builds] == [(first.id, "active")]
    active = load_active_build(embedded)  # checksums still match: the previous files are untouched
    assert active.build_id == first.id and active.ntotal == len(_live(embedded))


def test_retired_builds_lose_their_files_but_the_active_and_the_previous_build_keep_theirs(embedded: Archive, archive_models) -> None:  # type: ignore[no-untyped-def]
    version, data_dir = archive_models.version, embedded.settings.data_dir
    folder = data_dir / INDEX_FOLDER

    def files(row: IndexBuild) -> set[Path]:
        return {data_dir / row.file_path, data_dir / row.config["transforms_file"]}

    first = build_index(embedded, version)
    second = refresh_index(embedded, version).build
    assert all(path.is_file() for path in files(first) | files(second))  # the previous build is kept
    stray = folder / "build-written-by-a-build-not-yet-recorded.faiss"
    stray.write_bytes(b"not ours to judge")
    third = build_index(embedded, version)
    assert not any(path.exists() for path in files(first))
    assert set(folder.iterdir()) == files(second) | files(third) | {stray}  # unrecorded files are left alone
    with embedded.sessions() as session:
        rows = {row.id: row for row in session.scalars(select(IndexBuild)).all()}
    assert load_build(embedded, rows[second.id]).ntotal == len(_live(embedded))  # an engine mid-swap can still read it
    fourth = refresh_index(embedded, version).build
    assert set(folder.iterdir()) == files(third) | files(fourth) | {stray}
    with embedded.sessions() as session:
        statuses = [(row.id, row.status) for row in session.scalars(select(IndexBuild).order_by(IndexBuild.id))]
    assert statuses == [(first.id, "retired"), (second.id, "retired"), (third.id, "retired"), (fourth.id, "active")]
    assert load_active_build(embedded).build_id == fourth.id


def test_faiss_ids_are_live_rows_after_deletes(embedded: Archive, archive_models) -> None:  # type: ignore[no-untyped-def]
    version = archive_models.version
    build_index(embedded, version, BuildConfig(factory="IVF2,Flat", appearance_dims=8, shape_dims=8))
    with embedded.sessions.begin() as session:
        for image_id in sorted(_live(embedded))[::3]:
            store.soft_delete_image(session, image_id)
    refresh_index(embedded, version)
    build = load_active_build(embedded)
    assert set(build.ids().tolist()) == _live(embedded)
    assert faiss.try_extract_index_ivf(build.index.index) is not None


def test_a_graph_index_is_rebuilt_on_refresh_and_says_so(embedded: Archive, archive_models) -> None:  # type: ignore[no-untyped-def]
    version = archive_models.version
    build_index(embedded, version, BuildConfig(factory="HNSW8", appearance_dims=8, shape_dims=8))
    with embedded.sessions.begin() as session:
        store.soft_delete_image(session, min(_live(embedded)))
    report = refresh_index(embedded, version)
    assert report.rebuilt and report.removed == 1
    assert set(load_active_build(embedded).ids().tolist()) == _live(embedded)


def test_shards_split_the_archive_disjointly(embedded: Archive, archive_models) -> None:  # type: ignore[no-untyped-def]
    with embedded.sessions() as session:
        live = store.live_image_ids(session)
        store_version = "other-version"
        shards = [set(pending_image_ids(session, store_version, Shard(rank, 3))) for rank in range(3)]
    assert set().union(*shards) == set(live) and sum(map(len, shards)) == len(live)


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_two_process_torchrun_build_embeds_every_shard(archive: Archive, phantom_archive: Path, archive_models) -> None:  # type: ignore[no-untyped-def]
    ingest_path(archive, phantom_archive, None, None, progress=False)
    settings = archive.settings
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "S2M_DATA_DIR": str(settings.data_dir),
           "S2M_DATABASE_URL": settings.database_url, "S2M_PSEUDONYM_KEY": settings.pseudonym_key.decode()}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29631",
               str(Path(sys.executable).parent / "s2m"), "index", "build", "--no-progress", "--device", "cpu",
               "--batch-size", "4"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0: embedded 8 images" in result.stdout and "rank 1: embedded 8 images" in result.stdout
    build = load_active_build(archive)
    assert set(build.ids().tolist()) == _live(archive)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_s2m_index_build_opens_the_bundle_once_and_reads_only_s_c_and_e_once(
        archive: Archive, phantom_archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import generation.bundle as bundle_module
    from api.cli import app

    ingest_path(archive, phantom_archive, None, None, progress=False)
    settings = archive.settings
    for name, value in {"S2M_DATA_DIR": str(settings.data_dir), "S2M_DATABASE_URL": settings.database_url,
                        "S2M_PSEUDONYM_KEY": settings.pseudonym_key.decode()}.items():
        monkeypatch.setenv(name, value)
    opened: list[Path] = []
    reads: list[str] = []
    real_open, real_load = bundle_module.Bundle.open.__func__, bundle_module.load_file
    monkeypatch.setattr(bundle_module.Bundle, "open", classmethod(lambda cls, root: opened.append(root) or real_open(cls, root)))
    monkeypatch.setattr(bundle_module, "load_file", lambda path, device="cpu": reads.append(Path(path).name) or real_load(path, device=device))
    result = CliRunner().invoke(app, ["index", "build", "--no-progress", "--device", "cpu", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    assert "embedded 16 images" in result.output and "built and activated index build" in result.output
    assert len(opened) == 1, "the command opens its bundle once"
    assert sorted(reads) == ["embedder.safetensors", "encoder.safetensors", "synthesizer.safetensors"]
    assert set(load_active_build(archive).ids().tolist()) == _live(archive)
