"""`s2m serve`: the HTTP service under uvicorn (models load in each worker's lifespan, never at import)."""

from __future__ import annotations

import typer

from api.cli.errors import add_command


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    workers: int = typer.Option(1, "--workers", min=1, help="processes, each with its own models and batcher"),
) -> None:
    """Serve the search API, the DICOMweb facade and the sketch pad (settings from S2M_* variables)."""
    import uvicorn

    from api.settings import ServiceSettings

    ServiceSettings.from_env()  # a bad setting is one error line here, not a traceback in every worker
    uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="info")


def register(app: typer.Typer) -> None:
    """Add `s2m serve` to the top-level app."""
    add_command(app, "serve", serve)
