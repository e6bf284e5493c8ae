"""`s2m eval ...` and `s2m evaluate-embedder`: the evaluations' options and printouts.

The evaluations themselves live in `evaluation/` (retrieval, generation, the report of both);
the embedder's probe in `generation.moco.evaluation`. These commands read the options, call
them, write the JSON and print the headline figures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from api.cli.errors import InputError, add_command, add_group
from api.cli.run_options import comma_ints
from evaluation.generation_eval import HELDOUT_SEED
from evaluation.retrieval_eval import CANVASES as CANVAS_SIDES
from generation.presets import SHIPPED_BUNDLE

HELP = "Measure the product end to end on phantom data."
CANVASES = ",".join(map(str, CANVAS_SIDES))
MIN_CANVAS = 16


def retrieval(
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="model bundle folder"),
    archive_count: int = typer.Option(2000, "--archive", min=20, help="phantom archive size (rendered unless --archive-data)"),
    queries: int = typer.Option(100, "--queries", min=4, help="exact-case and similar-case queries per style (each)"),
    report: Path = typer.Option(..., "--report", help="JSON report to write"),
    work: Path = typer.Option(Path("data/eval-retrieval"), "--work", help="folder for the archive, its DB and index"),
    archive_data: Optional[Path] = typer.Option(None, "--archive-data", help="an existing phantom dataset as the archive"),
    canvases: str = typer.Option(CANVASES, "--canvases", help="canvas sides the queries are drawn on (cycled)"),
    size: int = typer.Option(256, "--size", help="side of rendered phantoms (masks are drawn from at this side)"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    set_weights: bool = typer.Option(False, "--set-weights", help="record the chosen weights in the work archive's build"),
    pix2pix: Optional[Path] = typer.Option(None, "--pix2pix", help="a bundle with the pix2pix network: adds the pix2pix + C row"),
    steps: Optional[int] = typer.Option(None, "--steps", min=0, help="H's steps T of the queries; default: what H was trained with"),
    signs: bool = typer.Option(False, "--signs", help="add the rows of sketch + each query's true signs (the bundle's sign directions)"),
    record_strengths: bool = typer.Option(False, "--record-strengths", help="with --signs: write the per-sign strengths, "
                                          "route and appearance weight chosen on validation into the bundle (what "
                                          "a sign asked as 'present' then means)"),
    feedback: bool = typer.Option(False, "--feedback", help="add relevance feedback: 0, 1 and 2 rounds of a simulated "
                                  "user's marks (diagnosis precision@10, exact-case recall@10)"),
) -> None:
    """Exact-case recall@1/@10, MRR, similar-case nDCG@10 (and normalised), diagnosis precision@10 per style."""
    from evaluation.retrieval_eval import run_retrieval_eval

    canvas_sides = comma_ints(canvases, "--canvases", MIN_CANVAS)
    if record_strengths and not signs:
        raise InputError("--record-strengths records what the sign rows chose: add --signs")
    started = time.perf_counter()
    result = run_retrieval_eval(model, archive_count, queries, work, archive_data, canvas_sides, size, seed, device,
                                set_weights, pix2pix, steps, signs, record_strengths, feedback)
    result["seconds"] = round(time.perf_counter() - started, 1)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result, indent=2))
    for style, rows in result["test_styles"].items():
        line = ", ".join(f"{row} {rows[row].get('exact_recall@10', {}).get('mean', float('nan')):.3f}"
                         for row in ("chamfer", "fused_xT"))
        typer.echo(f"{style}: exact recall@10 {line}")
    typer.echo("latency ms/query: " + ", ".join(f"{row} {ms:.1f}" for row, ms in result["latency_ms_per_query"].items()))
    for styles, rows in result.get("signs", {}).get("rows", {}).items():
        for row, figures in rows.items():
            typer.echo(f"signs, {styles} styles' test queries: {row} " + ", ".join(
                f"{name} {figures[name]['mean']:.3f} {figures[name]['ci95']}"
                for name in ("diagnosis_precision@10", "exact_recall@10", "sign_match@10")))
    if "recorded" in result.get("signs", {}):
        recorded = result["signs"]["recorded"]
        typer.echo(f"sign strengths chosen on validation ({recorded['route_row']}) written into {model}: "
                   + ", ".join(f"{sign}={value:g}" for sign, value in recorded["strengths"].items()))
    for name, part in result.get("feedback", {}).items():
        if isinstance(part, dict) and "rows" in part:
            typer.echo(f"feedback, {name} styles' test queries: " + ", ".join(
                f"{r} precision@10 {v['diagnosis_precision@10']['mean']:.3f} recall@10 {v['exact_recall@10']['mean']:.3f}"
                for r, v in part["rows"].items()))
    typer.echo(f"weights {result['weights']} (chosen on validation); report in {report}")


def generation(
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="model bundle folder"),
    pix2pix: Optional[Path] = typer.Option(None, "--pix2pix", help="a bundle with the pix2pix network (else its row is 'not run')"),
    count: int = typer.Option(500, "--count", min=2, help="held-out phantoms; each is drawn in every style"),
    report: Path = typer.Option(..., "--report", help="JSON report to write (the Fig. 3 grid PNG goes beside it)"),
    work: Path = typer.Option(Path("data/eval-generation"), "--work", help="folder for the rendered held-out phantoms"),
    heldout_data: Optional[Path] = typer.Option(None, "--heldout-data", help="an existing held-out phantom dataset"),
    size: int = typer.Option(256, "--size", min=32, help="side of rendered phantoms and of the drawing canvas"),
    seed: int = typer.Option(HELDOUT_SEED, "--seed", help="held-out phantom seed (never the training data's)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=0, help="H's steps T; default: what H was trained with"),
    perceptual: Optional[str] = typer.Option(None, "--perceptual", help="perceptual backbone; default: the preset's"),
    styles: Optional[str] = typer.Option(None, "--styles", help="comma-separated drawer styles; default: all and 'default'"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """FID, KID, Fréchet on C, DICE by S and by the true masks, perceptual distance, SSIM per row and style."""
    from evaluation.generation_eval import run_generation_eval
    from evaluation.sketches import style_names

    chosen = style_names(styles)
    started = time.perf_counter()
    result = run_generation_eval(model, pix2pix, count, work, heldout_data, size, seed, steps, perceptual, device,
                                 report.with_name(f"{report.stem}_fig3.png"), chosen)
    result["seconds"] = round(time.perf_counter() - started, 1)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result, indent=2))

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    for subset, rows in result["table"].items():
        for row, values in rows.items():
            typer.echo(f"{subset} {row}: FID {shown(values['fid'])}, DICE by S {shown(values['dice_s']['mean'])}, "
                       f"by truth {shown(values['dice_truth']['mean'])}, SSIM {shown(values['ssim']['mean'])}")
    typer.echo(f"report in {report}, Fig. 3 grid in {result['grid']}")


def all_(
    ctx: typer.Context,
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="model bundle folder"),
    pix2pix: Optional[Path] = typer.Option(None, "--pix2pix", help="a bundle with the pix2pix network"),
    report: Path = typer.Option(Path("docs/evaluation/index.html"), "--report", help="HTML report (JSON and plots beside it)"),
    count: int = typer.Option(500, "--count", min=2, help="held-out phantoms of the generation evaluation"),
    archive_count: int = typer.Option(2000, "--archive", min=20, help="phantom archive size of the retrieval evaluation"),
    queries: int = typer.Option(100, "--queries", min=4, help="retrieval queries per style (exact and similar, each)"),
    canvases: str = typer.Option(CANVASES, "--canvases", help="canvas sides the retrieval queries are drawn on"),
    size: int = typer.Option(256, "--size", min=32, help="side of rendered phantoms"),
    seed: int = typer.Option(0, "--seed", help="retrieval archive and query seed (held-out cases: seed + 1000)"),
    heldout_seed: int = typer.Option(HELDOUT_SEED, "--heldout-seed", help="generation held-out phantom seed"),
    work: Path = typer.Option(Path("data/eval"), "--work", help="folder for rendered data, the archive DB and index"),
    steps: Optional[int] = typer.Option(None, "--steps", min=0, help="H's steps T; default: what H was trained with"),
    perceptual: Optional[str] = typer.Option(None, "--perceptual", help="perceptual backbone; default: the preset's"),
    device: str = typer.Option("cpu", "--device"),
    generation_report: Optional[Path] = typer.Option(None, "--generation-report", help="reuse this `eval generation` JSON"),
    retrieval_report: Optional[Path] = typer.Option(None, "--retrieval-report", help="reuse this `eval retrieval` JSON"),
) -> None:
    """Both evaluations, then one HTML report: tables, the Fig. 3 grid, plots with intervals, every number in JSON."""
    from evaluation.provenance import command_line
    from evaluation.run_all import EvalAllConfig, evaluate_all

    config = EvalAllConfig(model, pix2pix, report, count, archive_count, queries, comma_ints(canvases, "--canvases", MIN_CANVAS),
                           size, seed, heldout_seed, work, steps, perceptual, device, generation_report, retrieval_report)
    written = evaluate_all(config, command_line(ctx, "eval all"))
    typer.echo(f"report in {written['html']}, every number in {written['json']}, {len(written) - 2} images beside them")


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


def signs(
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="bundle with sign directions (and G, C, S)"),
    report: Path = typer.Option(Path("runs/eval/sign-edits.json"), "--report", help="JSON report to write"),
    figure: Path = typer.Option(Path("docs/sign_edits.png"), "--figure", help="PNG: rows signs, columns strengths"),
    page: Optional[Path] = typer.Option(None, "--page", help="also write the Markdown page (table, goals, figure)"),
    samples: int = typer.Option(64, "--samples", min=4, help="held-out w read at every strength"),
    fid_samples: int = typer.Option(200, "--fid-samples", min=0, help="w per FID set (0: no FID)"),
    note: str = typer.Option("", "--note", help="the machine in words, for the page (e.g. 'shared with a training job')"),
) -> None:
    """Editing quality of the sign directions in W on held-out w: classifier score by strength, other classes'
    DICE, other signs' moves, FID; flags every goal a sign misses."""
    import shlex
    import sys

    from evaluation.sign_edits import SignEditConfig, run_sign_edit_eval, write_outputs

    if fid_samples == 1:
        raise InputError("--fid-samples needs at least 2 w per set (or 0 for no FID)")
    config = SignEditConfig(samples=samples, fid_samples=fid_samples)
    result, pictures = run_sign_edit_eval(model, config, fid_samples > 0, typer.echo)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result, indent=2))
    command = "s2m eval signs " + " ".join(shlex.quote(arg) for arg in sys.argv[3:]) if sys.argv[1:3] == ["eval", "signs"] \
        else "s2m eval signs"
    write_outputs(result, pictures, figure, page, command, note or "machine not described")
    for sign, row in result["signs"].items():
        flags = ", ".join(row["flags"]) or "all goals hold"
        typer.echo(f"{sign}: score {' / '.join(f'{s:.2f}' for s in row['score_by_strength'])}; "
                   f"FID {row.get('fid_at_largest', '-')}; {flags if not row['flags'] else 'MISSED: ' + flags}")
    typer.echo(f"report in {report}, figure in {figure}" + (f", page {page}" if page else ""))


def register(app: typer.Typer) -> None:
    """Add `s2m evaluate-embedder` and the `s2m eval` group (`retrieval`, `generation`, `all`) to the top-level app."""
    add_command(app, "evaluate-embedder", evaluate_embedder)
    add_group(app, "eval", HELP, {"retrieval": retrieval, "generation": generation, "all": all_,
                                    "signs": signs})
