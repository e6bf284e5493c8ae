"""`s2m train signs`: each clinical sign's direction in G's W and in C's space, into a bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command
from formats.errors import InputError


def signs(
    model: Path = typer.Option(..., "--model", help="bundle with generator and embedder (G and C)"),
    data: Path = typer.Option(..., "--data", help="labelled archive dataset (images/ + metadata.csv with findings, tonsil_grade)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write into a copy of the bundle here (default: into --model)"),
    probe_images: int = typer.Option(2000, "--probe-images", min=20, help="labelled archive images read"),
    w_samples: int = typer.Option(2000, "--w-samples", min=20, help="w sampled from G's mapping network"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Learn the sign directions from labelled archive images only; the bundle's version is unchanged."""
    import shutil

    from generation.bundle import Bundle
    from generation.sign_training import SignTrainConfig, train_signs

    if not (Path(data) / "metadata.csv").is_file():
        raise InputError(f"{data} has no metadata.csv: the sign directions need labelled archive images")
    copy = out is not None and out.resolve() != model.resolve()
    if copy and out.exists():
        raise InputError(f"{out} exists already; --out names a new folder for the copy of the bundle")
    bundle = Bundle.open(model)
    config = SignTrainConfig(probe_images=probe_images, w_samples=w_samples, seed=seed)
    directions = train_signs(bundle, data, config, progress=typer.echo)
    target = Path(shutil.copytree(model, out)) if copy else model  # written only once the directions are learned
    directions.save(target)
    summary = {sign: {key: round(value, 3) for key, value in quality.items() if key in ("probe_auc", "w_spearman")}
               for sign, quality in directions.record["quality"].items()}
    typer.echo(json.dumps(summary))
    typer.echo(f"sign directions ({', '.join(directions.names)}) saved into {target}; "
               f"bundle version {Bundle.open(target).version}")


def register(group: typer.Typer) -> None:
    """Add `s2m train signs` to the train group."""
    add_command(group, "signs", signs)
