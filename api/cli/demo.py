"""`s2m demo`: the main job of `make demo`, ending in a running, searchable service.

From nothing it renders a phantom archive, ingests it into a SQLite archive of its own, embeds and
indexes it with the shipped bundle, makes a local API key and serves the sketch pad. Each step
keeps what an earlier run made (a second run starts in seconds) and resumes what one left half done.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
    serve_demo(ready, model, host, port)


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
    from phantoms.contact_sheet import save_contact_sheet

    sheet = root / "phantom_contact_sheet.png"
    if not sheet.is_file():
        save_contact_sheet(dataset, sheet, count=CONTACT_SHEET_IMAGES)
    typer.echo(f"contact sheet:   {sheet}")
    generated = root / "sketch2medi_demo.png"
    if not generated.is_file():
        generate_from_freehand(dataset, model, generated)
    typer.echo(f"Sketch2MedI:     {generated}")
    typer.echo("  rows: free-hand sketch | x_0 = G(E(sketch)) | x_T after T refinement steps of H | reference photo")


def archive_settings(root: Path, count: int) -> "Settings":
    """The demo archive's own settings: never the archive of the environment (`S2M_DATABASE_URL`)."""
    from indexing.settings import SQLITE_FILE, Settings

    data_dir = (root / f"archive-{count}").resolve()
    return Settings.from_env({"S2M_DATA_DIR": str(data_dir), "S2M_DATABASE_URL": f"sqlite:///{data_dir / SQLITE_FILE}"})


def prepare_archive(root: Path, dataset: Path, model: Path) -> DemoArchive:
    """Ingest the dataset (if not all in), embed what lacks vectors, index (if the active build is not
    this bundle's over every live image), and make or reuse the demo's API key."""
    from generation.bundle import Bundle
    from generation.training import make_progress
    from indexing import store
    from indexing.archive import Archive
    from indexing.fused_index import BuildConfig, build_index, index_status
    from indexing.ingest.run import ingest_path
    from indexing.shape import ShapeConfig
    from indexing.vectors import ArchiveModels, embed_archive
    from phantoms.dataset import read_metadata

    count = len(read_metadata(dataset))
    settings = archive_settings(root, count)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.open(model)
    archive = Archive.create(settings)
    try:
        with archive.sessions() as session:
            present = len(store.live_image_ids(session))
        if present < count:
            began = time.perf_counter()
            report = ingest_path(archive, dataset, progress=True)
            typer.echo(f"ingest:          {report.added} added, {report.already_present} already there, "
                       f"{len(report.skipped)} skipped ({time.perf_counter() - began:.1f} s)")
        status = index_status(archive)
        if status.version != bundle.version or status.not_indexed or status.vector_count != status.live_images:
            began = time.perf_counter()
            with make_progress() as bar:
                task = bar.add_task("embed", total=None, status="S, C and E of every image")
                embedded = embed_archive(archive, ArchiveModels.load(bundle, _cpu()),
                                         on_batch=lambda done, total: bar.update(task, completed=done, total=total))
            typer.echo(f"embed:           {embedded.embedded} images with bundle {bundle.version} "
                       f"({time.perf_counter() - began:.1f} s)")
            began = time.perf_counter()
            build_index(archive, bundle.version, BuildConfig(shape=ShapeConfig(side=int(bundle.info["resolution"]))))
            typer.echo(f"index:           built ({time.perf_counter() - began:.1f} s)")
            status = index_status(archive)
        token = demo_api_key(archive, root / KEY_FILE)
    finally:
        archive.close()
    return DemoArchive(settings, dataset, status.live_images, int(status.build_id), token)


def _cpu():  # type: ignore[no-untyped-def]
    import torch

    return torch.device("cpu")


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


def serve_demo(ready: DemoArchive, model: Path, host: str, port: int) -> None:
    """Serve the demo archive in this process until Ctrl-C (uvicorn shuts down cleanly on SIGINT).

    The URL and key are printed once the server accepts connections (the models load first)."""
    import threading

    import uvicorn

    from api.app import create_app
    from api.settings import ServiceSettings

    environ = {**os.environ, "S2M_DATA_DIR": str(ready.settings.data_dir),
               "S2M_DATABASE_URL": ready.settings.database_url, "S2M_MODEL": str(model)}
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
            typer.echo("  Ctrl-C stops the server.")

    typer.echo("starting the service (loading the models) ...")
    threading.Thread(target=announce, name="announce", daemon=True).start()
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: stopping is this command's normal end
        pass
    typer.echo("server stopped")


def generate_from_freehand(dataset: Path, model: Path, output: Path) -> Path:
    """Simulate free-hand sketches of the first cases, run Sketch2MedI on them, write one sheet.

    The sketches come from the free-hand simulator (never seen in training), as a clinician's
    drawing would; the reference photo is shown beside what the networks made of the sketch.
    """
    import numpy as np
    import torch
    from PIL import Image

    from formats.sketch import canonical_sketch
    from generation.data import image_to_tensor, load_rgb, sketch_to_tensor
    from generation.pipeline import Sketch2MedI
    from generation.training import save_image_grid
    from phantoms.dataset import instance_categories
    from phantoms.freehand import freehand_sketch, sketch_seed

    pipeline = Sketch2MedI.from_bundle(model)
    categories = instance_categories(dataset)
    names = sorted(categories)[:GENERATED_CASES]
    sketches, references = [], []
    for name in names:
        with Image.open(dataset / "masks" / name) as mask:
            instance_mask = np.asarray(mask)
        drawing = freehand_sketch(instance_mask, categories[name], seed=sketch_seed(DEMO_SEED, Path(name).stem))
        sketches.append(sketch_to_tensor(canonical_sketch(drawing, pipeline.resolution)))  # [1, R, R]
        references.append(image_to_tensor(load_rgb(dataset / "images" / name, pipeline.resolution)))  # [3, R, R]
    sketch_batch = torch.stack(sketches)  # [N, 1, R, R]
    generated = pipeline.run(sketch_batch)
    rows = [torch.stack([s.expand(3, -1, -1), a, b, r])
            for s, a, b, r in zip(sketch_batch, generated.x_0, generated.image, references)]
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(torch.cat(rows), output, nrow=4)
    return output


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""
    add_command(app, "demo", demo)
