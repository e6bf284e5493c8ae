"""`s2m evaluate-embedder`: how well C's neighbours predict the archive's labels, against raw pixels.

The same probe the training loop runs each epoch, on any bundle and labelled dataset, with the
per-class recalls that show where the embedding loses to a linear read-out of the pixels.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import add_command

from generation.presets import SHIPPED_BUNDLE


def evaluate_embedder(
    data: Path = typer.Option(..., "--data", help="labelled dataset folder (images/ + metadata.csv)"),
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="model bundle folder holding embedder.safetensors"),
    label_columns: str = typer.Option("diagnosis,tonsil_grade", "--label-columns", help="metadata.csv columns to predict"),
    bank: Optional[int] = typer.Option(None, "--bank", help="labelled bank images (default: C's probe_bank_size)"),
    queries: Optional[int] = typer.Option(None, "--queries", help="held-out query images (default: C's probe_query_size)"),
    report: Optional[Path] = typer.Option(None, "--report", help="also write the report as JSON here"),
    readout: str = typer.Option(
        "bundle", "--readout",
        help="retrieval read-out: 'bundle' (the bundle's own), 'auto' (chosen by leave-one-out k-NN on the bank) or STAGE:GRID",
    ),
    save_readout: bool = typer.Option(False, "--save-readout", help="write the read-out evaluated here into the bundle"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """k-NN on C against k-NN and a linear probe on raw pixels, per label column and per class."""
    from generation.bundle import EMBEDDER, Bundle
    from generation.data import dataset_fingerprint, image_dir, list_images, native_side
    from generation.moco import Readout
    from generation.moco import save_readout as record_readout
    from generation.moco.probe import compare_with_raw_pixels, holdout_split, load_probe_set, probe_features
    from generation.moco.readout import choose_readout
    from generation.training import resolve_device

    columns = tuple(c.strip() for c in label_columns.split(",") if c.strip())
    if not columns:
        raise typer.BadParameter("name at least one column", param_hint="--label-columns")
    try:
        fixed_readout = None if readout in ("bundle", "auto") else Readout.parse(readout)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--readout") from error
    bundle = Bundle.open(model)
    embedder = bundle.load_embedder(resolve_device(device))
    config = embedder.config
    count = len(list_images(image_dir(data)))
    if count < 2:
        raise ValueError(f"{data} holds {count} image(s); the probe needs a bank and queries")
    data_side = native_side(data)
    train_indices, holdout_indices = holdout_split(count, config.probe_holdout_fraction, config.seed)
    probe = load_probe_set(
        data, columns, train_indices, holdout_indices, data_side,
        bank or config.probe_bank_size, queries or config.probe_query_size,
    )
    choice = choose_readout(embedder, probe, config.knn_k, config.knn_temperature) if readout == "auto" else None
    chosen = choice.readout if choice else fixed_readout or config.readout
    embedder = embedder.with_readout(chosen)
    reports = compare_with_raw_pixels(embedder.describe, probe, config.knn_k, config.knn_temperature)
    pooled = probe_features(embedder.embed(probe.bank_images), embedder.embed(probe.query_images), probe, "pooled",
                            config.knn_k, config.knn_temperature)

    trained_on = bundle.entry(EMBEDDER).get("data_fingerprint")
    fingerprint = dataset_fingerprint(data)
    same_data = trained_on == fingerprint
    typer.echo(f"C from {model} on {data} (fingerprint {fingerprint}; C trained on {trained_on}: " + (
        "the same files, queries from the split C never trained on)" if same_data
        else "different file names or sizes)"
    ))
    typer.echo(f"images at the data's {data_side} px; C reads them at {config.resolution} px")
    typer.echo(f"k-NN k={config.knn_k} T={config.knn_temperature}; linear = best of several weight decays on the queries (optimistic)")
    typer.echo(f"C's retrieval read-out: {chosen}" + (" (chosen by leave-one-out k-NN on the bank; mean accuracy per candidate: "
               + ", ".join(f"{r.stage}:{r.grid} {s:.3f}" for r, s in choice.scores.items()) + ")" if choice else ""))
    for column in reports:
        verdict = "clearly beats" if column.clearly_beats_pixels else "beats, within noise," if column.margin > 0 else "does not beat"
        typer.echo(f"\n{column.column}: {len(probe.bank_images)} bank, {column.queries} queries, chance {column.chance:.3f}")
        typer.echo(f"  raw pixels  k-NN {column.pixel_knn:.3f}  linear {column.pixel_linear:.3f}")
        typer.echo(f"  C           k-NN {column.embedding_knn:.3f}  linear {column.embedding_linear:.3f}")
        typer.echo(f"  C pooled    k-NN {pooled[column.column + '/pooled_knn']:.3f}  linear {pooled[column.column + '/pooled_linear']:.3f}")
        low, high = column.margin_interval
        typer.echo(f"  C k-NN {verdict} the raw-pixel linear probe ({column.margin:+.3f}, 95 % paired bootstrap {low:+.3f} to {high:+.3f})")
        typer.echo(f"  {'recall per class':<24} {'C k-NN':>7} {'pixel linear':>13}")
        for name, ours, pixels in zip(column.classes, column.embedding_knn_recall, column.pixel_linear_recall):
            typer.echo(f"  {name:<24} {_share(ours):>7} {_share(pixels):>13}")
    if report is not None:
        payload = {
            "model": str(model), "data": str(data), "data_fingerprint": fingerprint, "trained_on_fingerprint": trained_on,
            "bank": len(probe.bank_images), "data_side": data_side, "embedder_side": config.resolution,
            "knn_k": config.knn_k, "knn_temperature": config.knn_temperature,
            "readout": {"stage": chosen.stage, "grid": chosen.grid, **({"bank_scores": choice.as_record()["bank_scores"]} if choice else {})},
            "pooled": pooled,
            "columns": [dict(dataclasses.asdict(c), margin=c.margin, clearly_beats_pixels=c.clearly_beats_pixels) for c in reports],
        }
        report.write_text(json.dumps(payload, indent=1))
    if save_readout:
        how = choice.as_record() if choice else {"stage": chosen.stage, "grid": chosen.grid, "selected_by": "evaluate-embedder --readout"}
        how["evaluated_on"] = {"data_fingerprint": fingerprint, "bank": len(probe.bank_images), **{
            f"{c.column}/{key}": value for c in reports for key, value in
            (("embedding_knn", c.embedding_knn), ("pixel_linear", c.pixel_linear), ("margin_interval", list(c.margin_interval)))
        }}
        record_readout(model, chosen, how)
        typer.echo(f"\nsaved read-out {chosen} into {model}")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    """Add the evaluation commands to the top-level app."""
    add_command(app, "evaluate-embedder", evaluate_embedder)
