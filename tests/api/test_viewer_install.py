"""`s2m viewer install` without the network: npm is outside the project, so a stand-in `npm` script packs
a local tarball (or fails as npm does); the real npm is used offline with an empty cache for the
unreachable registry. Each failure is one sentence, exit 2, and leaves the viewer folder as it was."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from api.viewer.install import MARKER, PINNED, ViewerInstallError, ViewerRelease, install_viewer, installed_build, integrity_of

REPO = Path(__file__).resolve().parents[2]


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def _fake_npm(folder: Path, tarball: Path | None, fail_with: str = "") -> str:
    """An `npm` that copies `tarball` into its working folder (what `npm pack` does), or fails like npm."""
    script = folder / "npm"
    body = f'echo "npm error code {fail_with}" >&2; exit 1' if fail_with else f'cp "{tarball}" ./ohif-app-{PINNED.version}.tgz'
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def _s2m_viewer_install(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", "viewer", "install"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_installs_only_the_build_atomically_and_once(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path / "ohif.tgz", {"package/package.json": b"{}", "package/dist/index.html": b"<html>",
                                               "package/dist/assets/a.js": b"1", "package/dist/../../evil": b"x"})
    release = ViewerRelease(integrity=integrity_of(tarball))
    root = tmp_path / "viewer"
    done = install_viewer(root, release, npm=_fake_npm(tmp_path, tarball))
    assert done.fetched and done.build == root / release.folder and installed_build(root, release) == done.build
    assert sorted(p.relative_to(done.build).as_posix() for p in done.build.rglob("*")) == [MARKER, "assets", "assets/a.js", "index.html"]
    assert not (tmp_path / "evil").exists() and [p.name for p in root.iterdir()] == [release.folder]  # no temp folder left
    again = install_viewer(root, release, npm=_fake_npm(tmp_path, None, fail_with="ENOTFOUND"))  # npm is not asked again
    assert not again.fetched and again.build == done.build


def test_two_installs_at_once_fetch_once_and_both_get_the_build(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    tarball = _tarball(tmp_path / "ohif.tgz", {"package/dist/index.html": b"<html>"})
    release = ViewerRelease(integrity=integrity_of(tarball))
    slow = tmp_path / "npm"
    slow.write_text(f'#!/bin/sh\nsleep 1\necho fetched >> "{tmp_path / "fetches"}"\ncp "{tarball}" ./ohif.tgz\n')
    slow.chmod(0o755)
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: install_viewer(tmp_path / "viewer", release, npm=str(slow)), range(2)))
    assert sorted(one.fetched for one in done) == [False, True] and done[0].build == done[1].build
    assert (tmp_path / "fetches").read_text() == "fetched\n" and (done[0].build / "index.html").read_bytes() == b"<html>"


def test_a_tarball_with_another_hash_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path / "ohif.tgz", {"package/dist/index.html": b"<html>tampered"})
    root = tmp_path / "viewer"
    with pytest.raises(ViewerInstallError, match="does not match its pinned hash") as error:
        install_viewer(root, PINNED, npm=_fake_npm(tmp_path, tarball))
    assert "\n" not in str(error.value)
    assert list(root.iterdir()) == []


def test_cli_sentences_for_npm_missing_and_registry_unreachable(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "sh").symlink_to("/bin/sh")
    missing = _s2m_viewer_install({"S2M_VIEWER_DIR": str(tmp_path / "v1"), "PATH": str(bare)})
    assert missing.returncode == 2 and "npm is not installed" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "a-file").write_text("x")
    unusable = _s2m_viewer_install({"S2M_VIEWER_DIR": str(tmp_path / "a-file" / "viewer")})
    assert unusable.returncode == 2 and "cannot use" in unusable.stderr and "S2M_VIEWER_DIR" in unusable.stderr
    assert len(unusable.stderr.strip().splitlines()) == 1 and "Errno" not in unusable.stderr

    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed here: the unreachable-registry case needs the real client")
    offline = _s2m_viewer_install({"S2M_VIEWER_DIR": str(tmp_path / "v2"), "npm_config_offline": "true",
                                   "npm_config_cache": str(tmp_path / "empty-cache")})
    assert offline.returncode == 2, offline.stderr
    assert "npm could not fetch @ohif/app@" in offline.stderr and "ENOTCACHED" in offline.stderr
    assert not (tmp_path / "v2" / PINNED.folder).exists()
