"""A sketch search's pictures are served by every replica: two app instances on one PostgreSQL
database, the search on one and the fetches of its sketch, x_0 .. x_T and generated image on the
other, with the same ownership rule (another key: 404, an admin key: 200)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from indexing.settings import Settings
from tests.api.conftest import contour_png, keys, running, service_settings


@pytest.mark.parametrize("served_archive", ["postgresql"], indirect=True)
def test_a_search_on_one_instance_has_its_pictures_served_by_the_other(served_archive: Settings, phantom_archive: Path,
                                                                      tmp_path: Path) -> None:
    search, admin = keys(served_archive)
    stranger = keys(served_archive)[0]  # another search key
    settings = service_settings(served_archive, tmp_path)
    with running(settings) as one, running(settings) as two:
        answer = httpx.post(f"{one}/v1/search", headers={"Authorization": f"Bearer {search}"}, timeout=120,
                            files={"sketch": ("s.png", contour_png(phantom_archive, "000002"), "image/png")},
                            data={"k": "3"}).json()
        urls = [answer["sketch_url"], answer["generated_image_url"], *answer["step_urls"]]
        assert len(answer["step_urls"]) >= 2

        def fetch(base: str, url: str, key: str) -> httpx.Response:
            return httpx.get(f"{base}{url}", headers={"Authorization": f"Bearer {key}"}, timeout=60)

        here = [fetch(one, url, search) for url in urls]
        there = [fetch(two, url, search) for url in urls]
        strangers = [fetch(two, url, stranger) for url in urls]
        admins = [fetch(two, url, admin) for url in urls]
    assert [r.status_code for r in here] == [200] * len(urls) and [r.status_code for r in there] == [200] * len(urls)
    assert [r.content for r in there] == [r.content for r in here]  # the same pixels, from the database
    assert all(r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG") for r in there)
    assert [r.status_code for r in strangers] == [404] * len(urls)  # as for an unknown query
    assert all("no generated pictures" in r.json()["error"] for r in strangers)
    assert [r.status_code for r in admins] == [200] * len(urls)
