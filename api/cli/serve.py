"""`s2m serve`: the HTTP service under uvicorn (models load in each worker's lifespan, never at import),
and with `--viewer-port` the OHIF viewer's origin beside it (api/viewer/origin.py)."""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

import typer

from api.cli.errors import add_command


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    workers: int = typer.Option(1, "--workers", min=1, help="processes, each with its own models and batcher"),
    viewer_port: Optional[int] = typer.Option(None, "--viewer-port", min=1, max=65535,
                                              help="also serve the installed OHIF viewer on this port (s2m viewer install)"),
) -> None:
    """Serve the search API, the DICOMweb facade and the sketch pad (settings from S2M_* variables)."""
    import uvicorn

    from api.settings import ServiceSettings

    if viewer_port is not None:
        if viewer_port == port:
            raise typer.BadParameter("the viewer needs a port of its own", param_hint="--viewer-port")
        os.environ["S2M_VIEWER_PORT"] = str(viewer_port)  # the workers' /viewer links lead there
    ServiceSettings.from_env()  # a bad setting is one error line here, not a traceback in every worker
    viewer = None if viewer_port is None else start_viewer(host, port, viewer_port)
    try:
        uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="info")
    finally:
        if viewer is not None:
            viewer.should_exit = True


def start_viewer(host: str, service_port: int, viewer_port: int, environ: dict[str, str] | None = None) -> Any:
    """The viewer's origin (settings from `environ`, default this process's) on its own uvicorn server in a
    thread of this process: it only serves files and forwards requests."""
    import uvicorn

    from api.viewer.config import ViewerSettings
    from api.viewer.origin import create_viewer_app

    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    settings = ViewerSettings.from_env(f"http://{local}:{service_port}", environ)
    server = uvicorn.Server(uvicorn.Config(create_viewer_app(settings), host=host, port=viewer_port, log_level="warning"))
    threading.Thread(target=server.run, name="viewer", daemon=True).start()
    typer.echo(f"OHIF viewer on http://{local}:{viewer_port}/ (PACS: {settings.pacs_url or 'none: set S2M_PACS_URL'})")
    return server


def register(app: typer.Typer) -> None:
    """Add `s2m serve` to the top-level app."""
    add_command(app, "serve", serve)
