"""A sketch search's pictures in the database (indexing/pictures.py): stored with the query's log
row, read back pixel for pixel, and swept by count and by age (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlalchemy import func, select, update

from indexing import store
from indexing.archive import Archive
from indexing.models import QueryPictures, utc_now
from indexing.pictures import PictureRetention, Pictures, pictures_of, put_pictures, sweep_pictures


def _pictures(seed: int) -> Pictures:
    rng = np.random.default_rng(seed)
    return Pictures(rng.integers(0, 256, (32, 32), dtype=np.uint8),
                    tuple(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)))


def _logged(archive: Archive, count: int) -> list[str]:
    uids = []
    with archive.sessions.begin() as session:
        for index in range(count):
            entry = store.log_query(session, None, 5, 1.0, [], uid=f"q{index:031d}")
            put_pictures(session, entry, _pictures(index))
            uids.append(entry.uid)
    return uids


def test_pictures_come_back_pixel_for_pixel_and_only_sketch_searches_have_them(archive: Archive) -> None:
    uid = _logged(archive, 1)[0]
    with archive.sessions.begin() as session:
        kept = pictures_of(session, store.get_query(session, uid))
        bare = store.log_query(session, None, 5, 1.0, [], uid="x" * 32, kind="example")
        assert pictures_of(session, bare) is None
    expected = _pictures(0)
    assert kept is not None and np.array_equal(kept.sketch, expected.sketch) and kept.sketch.dtype == np.uint8
    assert len(kept.steps) == 3 and all(np.array_equal(a, b) for a, b in zip(kept.steps, expected.steps))


def test_the_sweep_keeps_the_newest_within_the_count_and_drops_those_past_the_age(archive: Archive) -> None:
    uids = _logged(archive, 6)
    with archive.sessions.begin() as session:  # the first query's pictures are two days old
        first = store.get_query(session, uids[0])
        session.execute(update(QueryPictures).where(QueryPictures.query_id == first.id)
                        .values(created_at=utc_now() - timedelta(days=2)))
    with archive.sessions.begin() as session:
        assert sweep_pictures(session, PictureRetention(count=10, max_age=timedelta(hours=24))) == 1
    with archive.sessions.begin() as session:
        assert sweep_pictures(session, PictureRetention(count=3, max_age=timedelta(hours=24))) == 2
    with archive.sessions.begin() as session:
        kept = [uid for uid in uids if pictures_of(session, store.get_query(session, uid)) is not None]
        assert kept == uids[3:]  # the three newest
        assert session.scalar(select(func.count()).select_from(QueryPictures)) == 3
        assert store.get_query(session, uids[0]) is not None  # the query log itself is never swept
        assert sweep_pictures(session, PictureRetention(count=3)) == 0
