"""The repository API the index builder and the service use, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

from indexing import store
from indexing.archive import Archive
from indexing.cases import CaseRecord
from indexing.models import Image, IndexBuild, QueryLog


def _image(session, number: int, diagnosis: str = "pharyngitis") -> int:  # type: ignore[no-untyped-def]
    digest = f"{number:064x}"
    record = store.NewImage(sha256=digest, stored_path=f"images/{digest[:2]}/{digest}.png", width=8, height=8,
                            source="folder", case=CaseRecord(diagnosis=diagnosis))
    return store.add_image(session, record).id


def test_soft_delete_hides_an_image_and_its_vectors(archive: Archive) -> None:
    with archive.sessions() as session:
        ids = [_image(session, n) for n in range(1, 4)]
        vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
        store.put_embeddings(session, "v1", "appearance", ids, vectors)
        store.soft_delete_image(session, ids[1])
        session.commit()
    with archive.sessions() as session:
        assert store.get_image(session, ids[1]) is None
        assert store.get_image(session, ids[1], include_deleted=True) is not None
        assert [image.id for image in store.list_images(session)] == [ids[0], ids[2]]
        assert store.live_image_ids(session) == [ids[0], ids[2]]
        assert store.deleted_image_ids(session) == [ids[1]]
        got_ids, got = store.get_embeddings(session, "v1", "appearance")
        assert got_ids.tolist() == [ids[0], ids[2]]
        np.testing.assert_array_equal(got, vectors[[0, 2]])
        assert store.archive_stats(session).deleted == 1
        with pytest.raises(LookupError):
            store.soft_delete_image(session, 999_999)


def test_the_engines_and_routes_reads_keep_live_rows_meeting_the_conditions(archive: Archive) -> None:
    with archive.sessions() as session:
        ids = [_image(session, n, diagnosis) for n, diagnosis in enumerate(("normal", "pharyngitis", "normal", "normal"), 1)]
        store.put_embeddings(session, "v1", "appearance", ids, np.arange(8, dtype=np.float32).reshape(4, 2))
        store.put_embeddings(session, "v1", "latent", ids[:2], np.ones((2, 3), dtype=np.float32))
        store.put_embeddings(session, "v2", "appearance", ids, np.zeros((4, 2), dtype=np.float32))
        store.soft_delete_image(session, ids[2])
        session.commit()
    normal = [Image.diagnosis == "normal"]
    with archive.sessions() as session:
        assert [row.id for row in store.live_image_findings(session)] == [ids[0], ids[1], ids[3]]
        assert [row.id for row in store.live_image_findings(session, normal)] == [ids[0], ids[3]]
        assert sorted(store.live_images(session, [ids[3], ids[2], ids[1], 999_999])) == [ids[1], ids[3]]
        assert sorted(store.live_images(session, ids, normal)) == [ids[0], ids[3]]
        assert store.live_images(session, []) == {}
        vectors = store.embedding_vectors(session, "v1", ("appearance", "latent"), [ids[0], ids[2]])  # deleted included
        assert sorted(vectors) == [(ids[0], "appearance"), (ids[0], "latent"), (ids[2], "appearance")]
        np.testing.assert_array_equal(vectors[(ids[2], "appearance")], [4.0, 5.0])


def test_embeddings_are_replaced_per_model_version_and_kind(archive: Archive) -> None:
    with archive.sessions() as session:
        ids = [_image(session, n) for n in range(1, 3)]
        store.put_embeddings(session, "v1", "latent", ids, np.ones((2, 3), dtype=np.float32))
        store.put_embeddings(session, "v1", "latent", ids[:1], np.full((1, 3), 7.0, dtype=np.float32))
        store.put_embeddings(session, "v2", "latent", ids, np.zeros((2, 5), dtype=np.float32))
        session.commit()
        _, v1 = store.get_embeddings(session, "v1", "latent")
        _, v2 = store.get_embeddings(session, "v2", "latent")
        assert v1.tolist() == [[7.0] * 3, [1.0] * 3]
        assert v2.shape == (2, 5)
        assert store.get_embeddings(session, "v1", "appearance")[0].size == 0
        with pytest.raises(ValueError, match="shape"):
            store.put_embeddings(session, "v1", "latent", ids, np.ones((3, 3), dtype=np.float32))
        with pytest.raises(ValueError, match="kind"):
            store.put_embeddings(session, "v1", "texture", ids, np.ones((2, 3), dtype=np.float32))


def test_one_active_index_build_at_a_time(archive: Archive) -> None:
    with archive.sessions() as session:
        first = store.record_index_build(session, "v1", "IDMap2,Flat", 10, "index/1.faiss", "a" * 64)
        second = store.record_index_build(session, "v1", "IDMap2,Flat", 12, "index/2.faiss", "b" * 64)
        assert store.active_index_build(session) is None
        store.activate_index_build(session, first.id)
        store.activate_index_build(session, second.id)
        session.commit()
    with archive.sessions() as session:
        assert store.active_index_build(session).id == second.id
        statuses = {build_id: session.get(IndexBuild, build_id).status for build_id in (first.id, second.id)}
        assert statuses == {first.id: "retired", second.id: "active"}
        assert store.archive_stats(session).active_build_id == second.id


def test_api_keys_are_hashed_scoped_and_revocable(archive: Archive) -> None:
    with archive.sessions() as session:
        searcher, search_token = store.create_api_key(session, "viewer", ["search"])
        _, admin_token = store.create_api_key(session, "ops", ["admin"])
        session.commit()
        assert search_token.split("_", 2)[2] not in searcher.secret_hash
        assert store.verify_api_key(session, search_token, "search").id == searcher.id
        assert store.verify_api_key(session, search_token, "admin") is None
        assert store.verify_api_key(session, admin_token, "search") is not None
        assert store.verify_api_key(session, search_token[:-1] + "x", "search") is None
        assert store.verify_api_key(session, "garbage", "search") is None
        store.revoke_api_key(session, searcher.id)
        session.commit()
        assert store.verify_api_key(session, search_token, "search") is None
        with pytest.raises(ValueError, match="scopes"):
            store.create_api_key(session, "bad", ["root"])


def test_query_log_sketches_and_annotations_round_trip(archive: Archive) -> None:
    with archive.sessions() as session:
        image_id = _image(session, 1)
        key, _ = store.create_api_key(session, "viewer", ["search"])
        store.log_query(session, key.id, k=5, latency_ms=12.5, result_ids=[image_id], filters={"diagnosis": "x"})
        store.put_sketch(session, image_id, "s1", b"first")
        store.put_sketch(session, image_id, "s1", b"second")
        rle = {"size": [8, 8], "counts": "0"}
        store.add_annotation(session, image_id, store.NewAnnotation(1, 1, rle))
        store.add_annotation(session, image_id, store.NewAnnotation(3, 2, rle, origin="model", model_version="solo-1", score=0.9))
        with pytest.raises(ValueError, match="model version"):
            store.add_annotation(session, image_id, store.NewAnnotation(3, 3, rle, origin="model"))
        session.commit()
    with archive.sessions() as session:
        entry = session.query(QueryLog).one()
        assert (entry.api_key_id, entry.k, entry.result_ids) == (key.id, 5, [image_id])
        assert entry.created_at.tzinfo is not None
        assert store.get_sketch(session, image_id, "s1") == b"second"
        assert store.get_sketch(session, image_id, "s2") is None
        assert [a.origin for a in store.list_annotations(session, image_id)] == ["expert", "model"]
        assert len(store.list_annotations(session, image_id, origin="expert")) == 1
