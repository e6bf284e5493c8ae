"""`s2m viewer install`: the pinned OHIF release, fetched once with the machine's own npm client.

Why npm: OHIF publishes its ready-built viewer (`package/dist`: index.html, bundles, codecs) as
the npm package `@ohif/app`; `npm pack` fetches that tarball from whatever registry the machine's
npm is set up for (a hospital mirror included), so no registry address is written here. The
tarball's sha512 is pinned beside its version: a different tarball is refused and nothing is
installed. The build is unpacked into a temporary folder beside its destination and renamed into
place, so a half-unpacked viewer is never served, and two installs into one folder take turns (a lock
on the folder itself): the second finds the first's build and fetches nothing. Afterwards everything
is offline.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from formats.errors import InputError

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
# sha512 of @ohif/app-3.13.2.tgz (49,906,651 bytes), as npm's `integrity` writes it.
OHIF_INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
BUILD_PREFIX = "package/dist/"
MARKER = ".s2m-viewer.json"  # written last into the build: what was installed, from which tarball
NPM_TIMEOUT_S = 600


class ViewerInstallError(InputError):
    """The viewer could not be installed (npm missing, registry unreachable, hash differs); nothing changed."""


@dataclass(frozen=True)
class ViewerRelease:
    """The pinned release: package, version and the tarball's integrity (`sha512-<base64>`)."""

    package: str = OHIF_PACKAGE
    version: str = OHIF_VERSION
    integrity: str = OHIF_INTEGRITY

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def folder(self) -> str:
        return f"ohif-{self.version}"


PINNED = ViewerRelease()


@dataclass(frozen=True)
class Installed:
    build: Path  # the folder served at the viewer's root (index.html, app bundles)
    fetched: bool  # False when an earlier install was already there
    tarball_bytes: int | None = None


def viewer_root(environ: Mapping[str, str] | None = None) -> Path:
    """`S2M_VIEWER_DIR`, else `<S2M_DATA_DIR>/viewer` (the archive's data dir: `./data` by default)."""
    env = os.environ if environ is None else environ
    if env.get("S2M_VIEWER_DIR"):
        return Path(env["S2M_VIEWER_DIR"]).expanduser().resolve()
    return Path(env.get("S2M_DATA_DIR") or "data").expanduser().resolve() / "viewer"


def installed_build(root: Path, release: ViewerRelease = PINNED) -> Path | None:
    """The release's unpacked build under `root` when a finished install is there, else None."""
    build = root / release.folder
    try:
        marker = json.loads((build / MARKER).read_text())
    except (OSError, ValueError):
        return None
    complete = marker.get("integrity") == release.integrity and (build / "index.html").is_file()
    return build if complete else None


def integrity_of(path: Path) -> str:
    """npm's integrity string (`sha512-<base64 digest>`) of a file."""
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def _npm_error(stdout: str, stderr: str) -> str:
    """npm's own error code (ENOTFOUND, ETIMEDOUT, ENOTCACHED, E404, ...) from its output, or its first error line."""
    try:
        code = json.loads(stdout)["error"]["code"]
        if isinstance(code, str) and code:
            return f"npm error code {code}"
    except (ValueError, KeyError, TypeError):
        pass
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[1] in ("error", "ERR!") and parts[2] == "code":
            return f"npm error code {parts[3]}"
    errors = [line for line in lines if line.startswith("npm error") or line.startswith("npm ERR!")]
    return (errors or lines or ["no output"])[0][:200]


def fetch_tarball(release: ViewerRelease, into: Path, npm: str | None = None) -> Path:
    """`npm pack <package>@<version>` in `into`; the tarball's path, or one ViewerInstallError sentence."""
    npm = npm or shutil.which("npm")
    if npm is None:
        raise ViewerInstallError(f"npm is not installed: install Node.js's npm (e.g. `apt-get install npm`) "
                                 f"and run `s2m viewer install` again to fetch {release.spec}")
    try:
        done = subprocess.run([npm, "pack", release.spec, "--json"], cwd=into, capture_output=True,
                              text=True, timeout=NPM_TIMEOUT_S, env={**os.environ, "npm_config_fund": "false"})
    except subprocess.TimeoutExpired:
        raise ViewerInstallError(f"npm did not fetch {release.spec} within {NPM_TIMEOUT_S} s: check the network "
                                 "and npm's registry setting, then run `s2m viewer install` again") from None
    if done.returncode != 0:
        raise ViewerInstallError(f"npm could not fetch {release.spec} from its registry ({_npm_error(done.stdout, done.stderr)}): "
                                 "check the network and npm's registry setting, then run `s2m viewer install` again")
    tarballs = sorted(into.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ViewerInstallError(f"npm pack {release.spec} left {len(tarballs)} tarballs instead of one")
    return tarballs[0]


def _unpack_build(tarball: Path, into: Path) -> None:
    """The tarball's `package/dist/` into `into`: regular files and folders only, never outside `into`."""
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if not member.name.startswith(BUILD_PREFIX):
                continue
            relative = PurePosixPath(member.name[len(BUILD_PREFIX):])
            if not relative.parts or relative.is_absolute() or ".." in relative.parts:
                continue
            target = into.joinpath(*relative.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # a regular file always has content
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    if not (into / "index.html").is_file():
        raise ViewerInstallError(f"{tarball.name} holds no {BUILD_PREFIX}index.html: it is not an OHIF viewer build")


def install_viewer(root: Path, release: ViewerRelease = PINNED, npm: str | None = None) -> Installed:
    """The release's build under `root`, fetched, checked and unpacked unless a finished install is there."""
    existing = installed_build(root, release)
    if existing is not None:
        return Installed(existing, fetched=False)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = os.open(root, os.O_RDONLY)
    except OSError as error:
        raise ViewerInstallError(f"cannot use {root} as the viewer folder ({error.strerror}): "
                                 "set S2M_VIEWER_DIR to a folder this user may write") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed, also when this process dies
        existing = installed_build(root, release)  # another install may have finished while this one waited
        if existing is not None:
            return Installed(existing, fetched=False)
        return _fetch_and_unpack(root, release, npm)
    finally:
        os.close(lock)


def _fetch_and_unpack(root: Path, release: ViewerRelease, npm: str | None) -> Installed:
    """`install_viewer`'s work, under its lock."""
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as scratch:
        download = Path(scratch) / "npm"
        download.mkdir()
        tarball = fetch_tarball(release, download, npm)
        found = integrity_of(tarball)
        if found != release.integrity:
            raise ViewerInstallError(f"the fetched {release.spec} does not match its pinned hash "
                                     f"({release.integrity[:23]}... expected, {found[:23]}... found): nothing was installed")
        staged = Path(scratch) / release.folder
        staged.mkdir()
        _unpack_build(tarball, staged)
        (staged / MARKER).write_text(json.dumps({"package": release.package, "version": release.version,
                                                  "integrity": release.integrity}))
        final = root / release.folder
        if final.exists():  # an unfinished or other install of this version: replace it
            shutil.rmtree(final)
        os.replace(staged, final)
        return Installed(final, fetched=True, tarball_bytes=tarball.stat().st_size)
