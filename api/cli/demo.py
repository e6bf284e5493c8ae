"""`s2m demo`: the main job of `make demo`, ending in a running, searchable service.

From nothing it renders a phantom archive, ingests it into a SQLite archive of its own, embeds and
indexes it with the shipped bundle, makes a local API key and serves the sketch pad. Each step
keeps what an earlier run made (a second run starts in seconds) and resumes what one left half done.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from api.cli.errors import add_command

from generation.presets import SHIPPED_BUNDLE

if TYPE_CHECKING:
    from indexing.archive import Archive
    from indexing.settings import Settings

DEMO_CASES = 2000
DEMO_SIZE = 256
DEMO_SEED = 0
CONTACT_SHEET_IMAGES = 16
GENERATED_CASES = 6  # rows of the Sketch2MedI sheet: free-hand sketch | x_0 | x_T | reference
KEY_FILE = "api-key"  # the demo key's token, mode 0600: the archive keeps only its hash
KEY_NAME = "demo"


def demo_root() -> Path:
    """`$S2M_DATA_DIR/demo`, or `data/demo` inside the project."""
    data_dir = os.environ.get("S2M_DATA_DIR")
    base = Path(data_dir) if data_dir else Path(__file__).resolve().parents[2] / "data"
    return base / "demo"


@dataclass(frozen=True)
class DemoArchive:
    """What the demo serves: the archive's own settings (a SQLite file beside its file store) and a key."""

    settings: "Settings"
    dataset: Path
    images: int
    build_id: int
    token: str


def demo(
    count: int = typer.Option(DEMO_CASES, "--count", min=1, help="phantom cases in the demo archive"),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), "--workers", min=1, help="rendering processes"),
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="model bundle (default: the shipped models/small)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address the service listens on"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="start the service when the archive is ready"),
    viewer_port: int = typer.Option(8001, "--viewer-port", min=1, max=65535,
                                    help="the OHIF viewer's port, when it is installed (s2m viewer install) and Orthanc is"),
) -> None:
    """Build the demo archive (phantoms, ingest, index, API key), then serve the sketch pad until Ctrl-C."""
    began = time.perf_counter()
    root = demo_root()
    dataset = render_archive(root, count, workers)
    sheets(root, dataset, model)
    ready = prepare_archive(root, dataset, model)
    typer.echo(f"archive:         {ready.images} images in {ready.settings.database_url}, index build {ready.build_id} "
               f"({time.perf_counter() - began:.1f} s to get here)")
    typer.echo(f"  other commands see it with S2M_DATA_DIR={ready.settings.data_dir}")
    if not serve:
        typer.echo(f"API key:         {ready.token}")
        return
    serve_demo(ready, model, host, port, viewer_port)


def render_archive(root: Path, count: int, workers: int) -> Path:
    """The phantom dataset folder of `count` cases, rendered unless a finished one is there."""
    from phantoms.dataset import generate_dataset

    dataset = root / f"phantoms-{count}"
    if (dataset / "annotations.json").is_file():  # written last: the folder is complete
        typer.echo(f"phantom archive: {dataset} (kept from an earlier run)")
        return dataset
    began = time.perf_counter()
    generate_dataset(dataset, count, DEMO_SIZE, DEMO_SEED, workers=workers)
    typer.echo(f"phantom archive: {dataset} ({count} cases at {DEMO_SIZE} px, {time.perf_counter() - began:.1f} s)")
    return dataset


def sheets(root: Path, dataset: Path, model: Path) -> None:
    """The contact sheet of the archive and a Sketch2MedI sheet from free-hand sketches (made once)."""
    from evaluation.grids import freehand_sheet
    from phantoms.contact_sheet import save_contact_sheet

    sheet = root / "phantom_contact_sheet.png"
    if not sheet.is_file():
        save_contact_sheet(dataset, sheet, count=CONTACT_SHEET_IMAGES)
    typer.echo(f"contact sheet:   {sheet}")
    generated = root / "sketch2medi_demo.png"
    if not generated.is_file():
        freehand_sheet(dataset, model, generated, GENERATED_CASES, DEMO_SEED)
    typer.echo(f"Sketch2MedI:     {generated}")
    typer.echo("  rows: free-hand sketch | x_0 = G(E(sketch)) | x_T after T refinement steps of H | reference photo")


def archive_settings(root: Path, count: int) -> "Settings":
    """The demo archive's own settings: never the archive of the environment (`S2M_DATABASE_URL`)."""
    from indexing.settings import SQLITE_FILE, Settings

    data_dir = (root / f"archive-{count}").resolve()
    return Settings.from_env({"S2M_DATA_DIR": str(data_dir), "S2M_DATABASE_URL": f"sqlite:///{data_dir / SQLITE_FILE}"})


def prepare_archive(root: Path, dataset: Path, model: Path) -> DemoArchive:
    """Ingest, embed and index the dataset where an earlier run did not (`indexing.prepare`), then make
    or reuse the demo's API key."""
    from generation.bundle import Bundle
    from indexing.archive import Archive
    from indexing.prepare import EMBED, INGEST, prepare_archive as prepare
    from phantoms.reader import read_metadata

    bundle = Bundle.open(model)

    def report(step: str, seconds: float, outcome: Any) -> None:
        if step == INGEST:
            typer.echo(f"ingest:          {outcome.added} added, {outcome.already_present} already there, "
                       f"{len(outcome.skipped)} skipped ({seconds:.1f} s)")
        elif step == EMBED:
            typer.echo(f"embed:           {outcome.embedded} images with bundle {bundle.version} ({seconds:.1f} s)")
        else:
            typer.echo(f"index:           built ({seconds:.1f} s)")

    settings = archive_settings(root, len(read_metadata(dataset)))
    prepared = prepare(settings, dataset, bundle, "cpu", progress=True, on_step=report)
    archive = Archive.open(settings)
    try:
        token = demo_api_key(archive, root / KEY_FILE)
    finally:
        archive.close()
    status = prepared.status
    return DemoArchive(settings, dataset, status.live_images, int(status.build_id), token)


def demo_api_key(archive: "Archive", key_file: Path) -> str:
    """The token in `key_file` while it is a valid key of this archive; otherwise a new search key, saved there."""
    from indexing import store

    if key_file.is_file():
        token = key_file.read_text().strip()
        with archive.sessions() as session:
            if store.verify_api_key(session, token, "search") is not None:
                return token
    with archive.sessions.begin() as session:
        _, token = store.create_api_key(session, KEY_NAME, ["search"])
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=key_file.parent, prefix=f".{key_file.name}.")  # mode 0600
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(temporary, key_file)
    return token


def demo_viewer(ready: DemoArchive, host: str, port: int, viewer_port: int, stack: ExitStack) -> Any:
    """The OHIF viewer on `viewer_port` with a private Orthanc holding the demo's DICOMs (under the demo folder,
    so a later run finds them stored), when both are installed; else one line saying what is missing."""
    from api.cli.serve import start_viewer
    from api.viewer.install import installed_build, viewer_root
    from api.viewer.orthanc import orthanc_binary, private_orthanc
    from phantoms.dicom import write_dataset_dicoms

    if installed_build(viewer_root()) is None:
        typer.echo("viewer:          not installed (`s2m viewer install` fetches OHIF once with npm); the sketch pad works without it")
        return None
    if orthanc_binary() is None:
        typer.echo("viewer:          Orthanc is not installed (scripts/ensure-orthanc.sh), so no viewer; the sketch pad works without it")
        return None
    began = time.perf_counter()
    pacs = stack.enter_context(private_orthanc(demo_root() / "orthanc"))
    if pacs.instance_count() < ready.images:
        pacs.upload(write_dataset_dicoms(ready.dataset, demo_root() / "dicom"))
    typer.echo(f"PACS:            a private Orthanc at {pacs.url} with the {pacs.instance_count()} demo DICOMs "
               f"({time.perf_counter() - began:.1f} s)")
    return start_viewer(host, port, viewer_port, {**os.environ, "S2M_PACS_URL": pacs.dicomweb,
                                                  "S2M_DATA_DIR": str(ready.settings.data_dir),
                                                  "S2M_DATABASE_URL": ready.settings.database_url,
                                                  "S2M_VIEWER_DIR": str(viewer_root())})


def serve_demo(ready: DemoArchive, model: Path, host: str, port: int, viewer_port: int | None = None) -> None:
    """Serve the demo archive in this process until Ctrl-C (uvicorn shuts down cleanly on SIGINT), with the
    OHIF viewer beside it when it can be (`demo_viewer`).

    The URL and key are printed once the server accepts connections (the models load first)."""
    import threading

    import uvicorn

    from api.app import create_app
    from api.settings import ServiceSettings

    with ExitStack() as stack:
        viewer = None if viewer_port is None else demo_viewer(ready, host, port, viewer_port, stack)
        environ = {**os.environ, "S2M_DATA_DIR": str(ready.settings.data_dir),
                   "S2M_DATABASE_URL": ready.settings.database_url, "S2M_MODEL": str(model),
                   **({"S2M_VIEWER_PORT": str(viewer_port)} if viewer is not None else {})}
        server = uvicorn.Server(uvicorn.Config(create_app(ServiceSettings.from_env(environ)), host=host, port=port,
                                               log_level="warning"))
        url = f"http://{host}:{port}/"

        def announce() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.1)
            if server.started:
                typer.echo("")
                typer.echo(f"Sketch2MedI is serving at {url}")
                typer.echo(f"  API key (paste it into the page): {ready.token}")
                typer.echo(f"  try: curl -H 'Authorization: Bearer {ready.token}' {url}v1/index")
                if viewer is not None:
                    typer.echo("  a case's 'Open in viewer' and 'Results in viewer' open OHIF (it asks for the same key once)")
                typer.echo("  Ctrl-C stops the server.")

        typer.echo("starting the service (loading the models) ...")
        threading.Thread(target=announce, name="announce", daemon=True).start()
        try:
            server.run()
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: stopping is this command's normal end
            pass
        finally:
            if viewer is not None:
                viewer.should_exit = True
    typer.echo("server stopped")


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""
    add_command(app, "demo", demo)
