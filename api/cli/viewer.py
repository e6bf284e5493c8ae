"""`s2m viewer install`: fetch the pinned OHIF viewer once (npm), check its hash, unpack it under the data dir."""

from __future__ import annotations

import time

import typer

from api.cli.errors import add_group

HELP = "The OHIF viewer the service serves with `s2m serve --viewer-port` (docs/viewer.md)."


def install() -> None:
    """Fetch @ohif/app at its pinned version with this machine's npm, check its sha512, unpack its build
    under S2M_VIEWER_DIR (default <data dir>/viewer); does nothing when it is already there."""
    from api.viewer.install import PINNED, install_viewer, viewer_root

    began = time.perf_counter()
    done = install_viewer(viewer_root())
    if not done.fetched:
        typer.echo(f"OHIF {PINNED.version} is already installed in {done.build}")
        return
    size = f"{(done.tarball_bytes or 0) / 1e6:.1f} MB"
    typer.echo(f"installed OHIF {PINNED.version} in {done.build} ({size} tarball, sha512 checked, "
               f"{time.perf_counter() - began:.1f} s)")


def register(app: typer.Typer) -> None:
    """Add the `s2m viewer` command group to the top-level app."""
    add_group(app, "viewer", HELP, {"install": install})
