"""`s2m generate` and `s2m generate-random`: look at what the networks make."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command
from generation.presets import SHIPPED_BUNDLE


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

    from generation.bundle import GENERATOR, Bundle
    from generation.training import resolve_device, save_image_grid

    if count < 1:
        raise typer.BadParameter("--count must be at least 1")
    dev = resolve_device(device)
    generator = Bundle.open(model).load(GENERATOR, dev)
    z = torch.randn(count, generator.config.z_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    with torch.no_grad():
        images = generator(z, truncation=truncation)  # [N, 3, R, R]
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(images, output, nrow=int(math.ceil(math.sqrt(count))))
    typer.echo(f"wrote {count} samples ({generator.config.resolution} px, psi {truncation}) to {output}")


OUTPUT_SUFFIX = ".png"


def checked_output(output: Path) -> Path:
    """The output path, refused before any inference unless it is a .png in a folder we can write."""
    from formats.errors import InputError

    if output.is_dir() or output.suffix.lower() != OUTPUT_SUFFIX:
        raise InputError(f"the output must be a {OUTPUT_SUFFIX} file, got {output}")
    folder = output.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the output under {folder}")
    return output


def generate(
    sketch: Path = typer.Argument(..., help="sketch picture (PNG/JPEG; white background, dark strokes)"),
    output: Path = typer.Option(..., "-o", "--output", help="PNG to write"),
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="model bundle with generator, encoder (and refiner)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=0, help="refinement steps T; default: what H was trained with"),
    show_steps: bool = typer.Option(False, "--show-steps", help="write the strip sketch | x_0 | x_1 .. x_T instead"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Generate a throat photo from a sketch with Sketch2MedI (E, G, then T steps of H).

    The sketch and the output path are checked before any model is loaded; the PNG is written atomically.
    """
    import torch

    from formats.sketch import canonical_sketch
    from generation.bundle import Bundle
    from generation.data import sketch_to_tensor, tensor_to_image
    from generation.files import atomic_target
    from generation.pipeline import Sketch2MedI
    from generation.training import resolve_device, save_image_grid

    checked_output(output)
    bundle = Bundle.open(model)
    sketch_tensor = sketch_to_tensor(canonical_sketch(sketch, bundle.resolution)).unsqueeze(0)  # [1, 1, R, R]
    pipeline = Sketch2MedI.from_bundle(bundle, resolve_device(device))
    generated = pipeline.run(sketch_tensor, steps)
    with atomic_target(output) as tmp:
        if show_steps:
            images = [sketch_tensor.to(generated.x_0.device).expand(-1, 3, -1, -1), generated.x_0, *generated.steps]
            strip = torch.cat(images)  # [T + 2, 3, R, R]
            save_image_grid(strip, Path(tmp), nrow=len(strip))
        else:
            from PIL import Image

            Image.fromarray(tensor_to_image(generated.image[0])).save(tmp, format="PNG")
    typer.echo(f"wrote {output} ({pipeline.resolution} px, {len(generated.steps)} refinement steps)")


def evaluate_generator(
    model: Path = typer.Option(..., "--model", help="model bundle folder holding generator.safetensors"),
    data: Path = typer.Option(..., "--data", help="held-out real images (dataset folder)"),
    count: int = typer.Option(500, "--count", help="real and generated images compared"),
    features: Path = typer.Option(None, "--features", help="bundle whose MoCo embedder gives the features "
                                  "(default: --model); without one, a fixed-seed untrained conv net"),
    extractor: str = typer.Option("auto", "--extractor", help="auto | moco-embedder | random-conv"),
    truncation: float = typer.Option(1.0, "--truncation"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    record: bool = typer.Option(True, "--record/--no-record", help="write the distance into bundle.json metrics"),
) -> None:
    """Fréchet distance between G's samples and held-out images, naming the feature extractor used."""
    from generation.bundle import GENERATOR, Bundle
    from generation.metrics import load_feature_extractor
    from generation.stylegan2.evaluate import generator_frechet_distance, load_real_images
    from generation.training import resolve_device

    dev = resolve_device(device)
    bundle = Bundle.open(model)
    generator = bundle.load(GENERATOR, dev)
    reals = load_real_images(data, generator.config.resolution, count)
    features_net, extractor_name = load_feature_extractor(features or model, dev, extractor)
    distance = generator_frechet_distance(generator, reals, features_net, seed, truncation)
    if record:
        key = f"generator_frechet_{extractor_name.replace('-', '_')}_{count}"
        bundle.record_metrics(**{key: distance})
    typer.echo(f"Frechet distance ({extractor_name} features, {count} images, psi {truncation}): {distance:.4f}")


def register(app: typer.Typer) -> None:
    """Add the generation commands to the top-level app."""
    add_command(app, "generate-random", generate_random)
    add_command(app, "evaluate-generator", evaluate_generator)
    add_command(app, "generate", generate)
