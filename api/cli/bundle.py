"""`s2m bundle ...`: inspect a model bundle and prepare it for shipping."""

from __future__ import annotations

from pathlib import Path

import typer

from api.cli.errors import add_group

HELP = "Model bundles: what they hold, float16 storage for shipping, and recording older bundles' digests."


def show(bundle: Path = typer.Argument(..., help="Bundle folder (holds bundle.json).")) -> None:
    """Networks in the bundle with their size, steps, storage dtype and recorded metrics."""
    from rich.console import Console
    from rich.table import Table

    from generation.bundle import DIGEST, Bundle

    opened = Bundle.open(bundle)
    table = Table("network", "MB", "storage", "facts")
    for name, entry in sorted(opened.networks.items()):
        size = (bundle / entry["file"]).stat().st_size / 1e6
        facts = {k: v for k, v in entry.items() if k not in ("config", "file", "storage_dtype", DIGEST)}
        table.add_row(name, f"{size:.1f}", entry.get("storage_dtype", "float32"), str(facts)[:160])
    Console().print(table)


def convert(
    bundle: Path = typer.Argument(..., help="Bundle folder to rewrite in place."),
    dtype: str = typer.Option("float16", help="Storage dtype: float16 (half the size) or float32."),
) -> None:
    """Store every network's floating tensors as DTYPE; loading casts back to float32."""
    from generation.bundle import convert_storage

    try:
        sizes = convert_storage(bundle, dtype)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    for name, size in sorted(sizes.items()):
        typer.echo(f"{name}: {size / 1e6:.1f} MB ({dtype})")


def upgrade(bundle: Path = typer.Argument(..., help="Bundle folder to upgrade in place.")) -> None:
    """Record the weight digest of each network saved before bundles recorded them (its version is unchanged)."""
    from generation.bundle import Bundle, record_digests

    added = record_digests(bundle)
    for name, digest in sorted(added.items()):
        typer.echo(f"{name}: sha256 {digest[:16]}... recorded")
    typer.echo(f"bundle version {Bundle.open(bundle).version}" + ("" if added else " (every digest was already recorded)"))


def register(app: typer.Typer) -> None:
    """Add the `s2m bundle` command group to the top-level app."""
    add_group(app, "bundle", HELP, {"show": show, "convert": convert, "upgrade": upgrade})
