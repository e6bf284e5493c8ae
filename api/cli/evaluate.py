"""`s2m evaluate-embedder`: how well C's neighbours predict the archive's labels, against raw pixels.

The same probe the training loop runs each epoch, on any bundle and labelled dataset, with the
per-class recalls that show where the embedding loses to a linear read-out of the pixels.
"""

from __future__ import annotations

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
    from generation.moco import Readout
    from generation.moco.train import save_readout as record_readout
    from generation.moco.evaluation import AUTO_READOUT, evaluate_embedder as run_evaluation
    from generation.training import resolve_device

    columns = tuple(c.strip() for c in label_columns.split(",") if c.strip())
    if not columns:
        raise typer.BadParameter("name at least one column", param_hint="--label-columns")
    try:
        chosen_readout = None if readout == "bundle" else readout if readout == AUTO_READOUT else Readout.parse(readout)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--readout") from error
    bundle = Bundle.open(model)
    embedder = bundle.load_embedder(resolve_device(device))
    result = run_evaluation(embedder, data, columns, chosen_readout, bank, queries,
                            trained_on_fingerprint=bundle.entry(EMBEDDER).get("data_fingerprint"))

    typer.echo(f"C from {model} on {data} (fingerprint {result.data_fingerprint}; C trained on "
               f"{result.trained_on_fingerprint}: " + (
                   "the same files, queries from the split C never trained on)" if result.same_data
                   else "different file names or sizes)"))
    typer.echo(f"images at the data's {result.data_side} px; C reads them at {result.embedder_side} px")
    typer.echo(f"k-NN k={result.knn_k} T={result.knn_temperature}; linear = best of several weight decays on the queries (optimistic)")
    choice = result.choice
    typer.echo(f"C's retrieval read-out: {result.readout}" + (" (chosen by leave-one-out k-NN on the bank; mean accuracy per candidate: "
               + ", ".join(f"{r.stage}:{r.grid} {s:.3f}" for r, s in choice.scores.items()) + ")" if choice else ""))
    for column in result.columns:
        verdict = "clearly beats" if column.clearly_beats_pixels else "beats, within noise," if column.margin > 0 else "does not beat"
        typer.echo(f"\n{column.column}: {result.bank} bank, {column.queries} queries, chance {column.chance:.3f}")
        typer.echo(f"  raw pixels  k-NN {column.pixel_knn:.3f}  linear {column.pixel_linear:.3f}")
        typer.echo(f"  C           k-NN {column.embedding_knn:.3f}  linear {column.embedding_linear:.3f}")
        pooled = result.pooled
        typer.echo(f"  C pooled    k-NN {pooled[column.column + '/pooled_knn']:.3f}  linear {pooled[column.column + '/pooled_linear']:.3f}")
        low, high = column.margin_interval
        typer.echo(f"  C k-NN {verdict} the raw-pixel linear probe ({column.margin:+.3f}, 95 % paired bootstrap {low:+.3f} to {high:+.3f})")
        typer.echo(f"  {'recall per class':<24} {'C k-NN':>7} {'pixel linear':>13}")
        for name, ours, pixels in zip(column.classes, column.embedding_knn_recall, column.pixel_linear_recall):
            typer.echo(f"  {name:<24} {_share(ours):>7} {_share(pixels):>13}")
    if report is not None:
        report.write_text(json.dumps({"model": str(model), "data": str(data), **result.as_record()}, indent=1))
    if save_readout:
        record_readout(model, result.readout, result.readout_record())
        typer.echo(f"\nsaved read-out {result.readout} into {model}")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    """Add the evaluation commands to the top-level app."""
    add_command(app, "evaluate-embedder", evaluate_embedder)
