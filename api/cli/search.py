"""`s2m search SKETCH...`: the closest archive cases to each sketch, as a table, JSON or a contact sheet."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from api.cli.errors import add_command
from formats.errors import InputError
from generation.presets import SHIPPED_BUNDLE

if TYPE_CHECKING:
    from indexing.fused_index import ChannelWeights
    from indexing.settings import Settings
    from retrieval.engine import SearchEngine, SearchResult
    from retrieval.filters import Filters

SKETCH_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FILTER_KEYS = ("diagnosis", "finding", "from", "to", "patient", "exclude-patient")
SHEET_THUMB = 96


def sketch_files(paths: list[Path]) -> list[Path]:
    """The sketch files named, a folder standing for its picture files (sorted by name)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in SKETCH_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"no sketch file or folder at {path}")
    if not files:
        raise InputError("no sketch pictures found in the folders given")
    return files


def _date(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_filters(items: list[str], settings: "Settings") -> "Filters":
    """`key=value` items -> Filters (diagnosis and patient repeat as any-of, finding as all-of);
    a patient ID becomes its pseudonym, a name or a date is refused."""
    from indexing.ingest.metadata import patient_filter_pseudonyms
    from retrieval.filters import Filters

    values: dict[str, list[str]] = {key: [] for key in FILTER_KEYS}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in values or not value:
            raise InputError(f"a filter is KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}")
        values[key].append(value)
    try:
        dates = {key: _date(values[key][-1]) if values[key] else None for key in ("from", "to")}
    except ValueError:
        raise InputError("dates in filters are ISO dates, e.g. from=2024-01-31") from None
    patients = {key: patient_filter_pseudonyms(values[key], settings.pseudonym_hex_chars, key,
                                               settings.existing_pseudonym_key) for key in ("patient", "exclude-patient")}
    return Filters(
        diagnoses=tuple(values["diagnosis"]), findings=tuple(values["finding"]),
        acquired_from=dates["from"], acquired_to=dates["to"],
        patients=patients["patient"], exclude_patients=patients["exclude-patient"],
    )


def result_record(path: Path, result: "SearchResult") -> dict:
    return {
        "sketch": path.name,
        "build_id": result.build_id,
        "timings_ms": {stage: round(ms, 2) for stage, ms in result.timings_ms.items()},
        "signs": [applied.as_record() for applied in result.signs],
        "hits": [
            {
                "rank": hit.rank, "image_id": hit.image_id, "original_file_name": hit.original_name,
                "case_id": hit.case.case_ref, "diagnosis": hit.case.diagnosis,
                "score": round(hit.score, 4),
                "channels": {name: round(value, 4) for name, value in hit.channels.__dict__.items()},
                "study_uid": hit.case.study_uid, "series_uid": hit.case.series_uid, "sop_uid": hit.case.sop_uid,
            }
            for hit in result.hits
        ],
    }


def _print_table(path: Path, result: "SearchResult") -> None:
    typer.echo(f"{path.name}  (build {result.build_id}, {sum(result.timings_ms.values()):.0f} ms)")
    if result.signs:
        typer.echo("signs: " + ", ".join(f"{a.sign}={a.strength:g} (W +{a.w_shift:.2f}, appearance +{a.appearance_shift:.3f})"
                                         for a in result.signs))
    typer.echo(f"{'rank':>4}  {'image':>6}  {'file':<16} {'case':<14} {'fused':>7} {'appear.':>7} {'latent':>7} {'shape':>7}  diagnosis")
    for hit in result.hits:
        channels = hit.channels
        typer.echo(f"{hit.rank:>4}  {hit.image_id:>6}  {(hit.original_name or '-'):<16} {(hit.case.case_ref or '-'):<14} {hit.score:>7.3f} "
                   f"{channels.appearance:>7.3f} {channels.latent:>7.3f} {channels.shape:>7.2f}  {hit.case.diagnosis or '-'}")


def write_sheet(out: Path, files_root: Path, results: list["SearchResult"]) -> None:
    """One row per sketch: canonical sketch | generated image | hits in rank order (written atomically)."""
    import numpy as np
    from PIL import Image

    from generation.files import atomic_target

    columns = 2 + max((len(result.hits) for result in results), default=0)
    sheet = Image.new("RGB", (columns * SHEET_THUMB, len(results) * SHEET_THUMB), (255, 255, 255))
    for row, result in enumerate(results):
        tiles = [Image.fromarray(result.sketch).convert("RGB"), Image.fromarray(np.ascontiguousarray(result.image))]
        for hit in result.hits:
            with Image.open(files_root / hit.stored_path) as stored:
                tiles.append(stored.convert("RGB"))
        for column, tile in enumerate(tiles):
            sheet.paste(tile.resize((SHEET_THUMB, SHEET_THUMB), Image.Resampling.BOX), (column * SHEET_THUMB, row * SHEET_THUMB))
    with atomic_target(out) as tmp:
        sheet.save(tmp, format="PNG")


def search(
    sketches: list[Path] = typer.Argument(..., help="sketch pictures, or folders of them"),
    k: int = typer.Option(10, "--k", min=1, max=100, help="cases per sketch"),
    as_json: bool = typer.Option(False, "--json", help="print JSON (one object per sketch in a list)"),
    filters: list[str] = typer.Option([], "--filter", help="KEY=VALUE: diagnosis, finding, from, to, patient, exclude-patient"),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="PNG contact sheet: sketch, generated image, hits"),
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help="the bundle the active index was built with"),
    device: str = typer.Option("auto", "--device"),
    index_device: str = typer.Option("auto", "--index-device", help="where the FAISS index searches: auto (GPU if faiss and CUDA allow), cpu, cuda"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="sketches through the networks at once"),
    signs: list[str] = typer.Option([], "--sign", help="NAME=STRENGTH (-1..1, below 0 absent), NAME=absent or NAME: a "
                                                      "clinical sign the sketch cannot show, present or ruled out, "
                                                      "e.g. --sign exudate=1 --sign erythema=0.5 --sign cobblestoning=absent"),
    like: list[int] = typer.Option([], "--like", help="IMAGE_ID among the sketch's hits to mark right: the search is "
                                                      "refined by the marks and the refined hits printed (one sketch)"),
    unlike: list[int] = typer.Option([], "--unlike", help="IMAGE_ID among the sketch's hits to mark not this (never comes back)"),
) -> None:
    """Find the archive cases closest to each sketch (the bundle opened and its models loaded once for all of them);
    with --like/--unlike, that search refined by the marks (relevance feedback, as the pad's Refine)."""
    from formats.sketch import CanonicalSketch, SketchError
    from generation.bundle import Bundle
    from generation.pipeline import QueryModels
    from generation.signs import SignDirections, parse_sign_items, require_signs
    from generation.training import resolve_device
    from indexing.settings import Settings
    from retrieval.engine import EngineConfig, Query, SearchEngine

    files = sketch_files(sketches)
    if (like or unlike) and len(files) != 1:
        raise InputError("--like and --unlike refine the search of one sketch: give one sketch file")
    if set(like) & set(unlike):
        raise InputError(f"image ids marked both --like and --unlike: {sorted(set(like) & set(unlike))}")
    settings = Settings.from_env()
    parsed = parse_filters(filters, settings)
    if sheet is not None and sheet.suffix.lower() != ".png":
        raise InputError("--sheet must name a .png file")
    bundle = Bundle.open(model)
    strengths = require_signs(SignDirections.from_bundle(bundle), parse_sign_items(signs))  # before any model loads
    canonical = []
    for path in files:  # every sketch checked before any model is loaded; the engine takes them as they are
        try:
            canonical.append(CanonicalSketch.of(path, bundle.resolution))
        except SketchError as error:
            raise InputError(f"{path.name}: {error}") from None
    models = QueryModels.load(bundle, resolve_device(device))
    engine = SearchEngine.open(settings, EngineConfig(index_device=index_device), models)
    try:
        results = []
        for start in range(0, len(canonical), batch_size):
            batch = canonical[start : start + batch_size]
            results.extend(engine.search_many([Query(sketch, k, parsed, signs=strengths) for sketch in batch]))
        if like or unlike:
            first_weights = engine.weights_for(Query(canonical[0], k, parsed, signs=strengths), strengths, engine.build)
            results = [refined_search(engine, results[0], first_weights, k, like, unlike)]
        if sheet is not None:
            write_sheet(sheet, engine.archive.settings.data_dir, results)
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps([result_record(path, result) for path, result in zip(files, results)], indent=2))
    else:
        for path, result in zip(files, results):
            _print_table(path, result)
    if sheet is not None and not as_json:
        typer.echo(f"wrote contact sheet {sheet}")


def refined_search(engine: "SearchEngine", first: "SearchResult", weights: "ChannelWeights", k: int, like: list[int],
                   unlike: list[int]) -> "SearchResult":
    """`first` (ranked by `weights`) refined by marks on its hits (`retrieval.feedback`, as `POST /v1/queries/{id}/refine`); the
    refined result keeps the sketch and pictures of the search it refines."""
    import dataclasses

    from retrieval.feedback import marks_as_shown, refine

    ordered, strangers = marks_as_shown([hit.image_id for hit in first.hits], like, unlike)
    if strangers:
        raise InputError(f"image ids not among the sketch's hits: {strangers}")
    step = refine(engine, engine.build, first.vectors, weights, ordered, unlike)
    again = engine.search_many([step.query(k, first.filters)])[0]
    return dataclasses.replace(again, sketch=first.sketch, image=first.image, steps=first.steps, signs=first.signs)


def register(app: typer.Typer) -> None:
    """Add `s2m search` to the top-level app."""
    add_command(app, "search", search)
