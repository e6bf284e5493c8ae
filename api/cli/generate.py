"""`s2m generate` and `s2m generate-random`: look at what the networks make."""

from __future__ import annotations

from pathlib import Path

import typer


def generate_random(
    model: Path = typer.Option(..., "--model", help="model bundle folder holding generator.safetensors"),
    count: int = typer.Option(16, "--count", help="number of images in the grid"),
    output: Path = typer.Option(..., "-o", "--output", help="PNG grid to write"),
    truncation: float = typer.Option(1.0, "--truncation", help="psi: w = w_avg + psi (w - w_avg)"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Sample random images from the bundle's generator G into one PNG grid."""
    import math

    import torch

    from generation.stylegan2 import load_generator
    from generation.training import resolve_device, save_image_grid

    if count < 1:
        raise typer.BadParameter("--count must be at least 1")
    try:
        dev = resolve_device(device)
        generator = load_generator(model, dev)
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    z = torch.randn(count, generator.config.z_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    with torch.no_grad():
        images = generator(z, truncation=truncation)  # [N, 3, R, R]
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(images, output, nrow=int(math.ceil(math.sqrt(count))))
    typer.echo(f"wrote {count} samples ({generator.config.resolution} px, psi {truncation}) to {output}")


def register(app: typer.Typer) -> None:
    """Add the generation commands to the top-level app."""
    app.command("generate-random")(generate_random)
