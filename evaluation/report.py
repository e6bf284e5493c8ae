"""The evaluation report: one self-contained HTML page, its plots and a JSON of every number.

Input is the JSON the two evaluations write (`evaluation.generation_eval`, `evaluation.retrieval_eval`);
this module only renders it: tables, the Fig. 3 grid, and matplotlib plots (PNG files beside the HTML,
no external CDN) of each metric against abstraction level and per drawer style with the bootstrap
95 % intervals. The page states the machine, the bundle version, the data seeds and the command.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

GENERATION_METRICS = ("fid", "kid", "frechet_c", "dice_s", "dice_truth", "perceptual", "ssim")
GENERATION_LABELS = {"fid": "FID (Inception-v3)", "kid": "KID", "frechet_c": "Fréchet on C", "dice_s": "DICE by S",
                     "dice_truth": "DICE by true masks", "perceptual": "perceptual distance", "ssim": "SSIM"}
RETRIEVAL_METRICS = ("exact_recall@1", "exact_recall@10", "exact_mrr", "similar_ndcg@10", "similar_ndcg@10_normalised",
                     "diagnosis_precision@10")
GRID_FILE = "fig3.png"


def write_report(path: Path, meta: dict[str, Any], generation: dict[str, Any] | None,
                 retrieval: dict[str, Any] | None) -> dict[str, Path]:
    """Write `path` (HTML), its JSON beside it (same stem) and the plots; returns what was written."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    written = {"html": path, "json": path.with_suffix(".json")}
    written["json"].write_text(json.dumps({"meta": meta, "generation": generation, "retrieval": retrieval}, indent=2))
    sections = [_meta_section(meta)]
    if generation is not None:
        grid = Path(generation["grid"])
        if grid.resolve() != (folder / GRID_FILE).resolve():
            shutil.copyfile(grid, folder / GRID_FILE)
        written["grid"] = folder / GRID_FILE
        plots = _generation_plots(generation, folder)
        written.update(plots)
        sections.append(_generation_section(generation, plots))
    if retrieval is not None:
        plots = _retrieval_plots(retrieval, folder)
        written.update(plots)
        sections.append(_retrieval_section(retrieval, plots))
    path.write_text(PAGE.format(title="Sketch2MedI evaluation", body="\n".join(sections)))
    return written


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}
th:first-child, td:first-child, td.name {{ text-align: left; }}
td.notrun {{ color: #888; font-style: italic; }}
img {{ max-width: 100%; }} img.grid {{ width: 520px; image-rendering: pixelated; }}
.ci {{ color: #777; font-size: 0.85em; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any) -> str:
    """A cell: a mean with its interval, a number, or a dash."""
    if isinstance(value, dict) and "mean" in value:
        if value["mean"] is None:
            return "–"
        low, high = value.get("ci95", [None, None])
        interval = f' <span class="ci">[{low:.3g}, {high:.3g}]</span>' if low is not None else ""
        return f"{value['mean']:.4g}{interval}"
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return "–" if value is None else _e(value)


def _table(header: list[str], rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _meta_section(meta: dict[str, Any]) -> str:
    rows = [[f'<td class="name">{_e(k)}</td>', f'<td class="name">{_e(json.dumps(v) if isinstance(v, (dict, list)) else v)}</td>']
            for k, v in meta.items()]
    return "<h2>How these numbers were made</h2>" + _table(["", ""], rows, "meta")


def _generation_rows(by_row: dict[str, Any], status: dict[str, str], ms: dict[str, float]) -> list[list[str]]:
    rows = []
    for row, state in status.items():
        if row not in by_row:
            rows.append([f'<td class="name">{_e(row)}</td>', f'<td class="notrun" colspan="{len(GENERATION_METRICS) + 2}">'
                         f"{_e(state)}</td>"])
            continue
        values = by_row[row]
        cells = [_number(values[m]) + (f' <span class="ci">± {values["kid_std"]:.2g}</span>'
                                       if m == "kid" and values.get("kid_std") is not None else "")
                 for m in GENERATION_METRICS]
        rows.append([f'<td class="name">{_e(row)}</td>', str(values["samples"]), *cells, _number(ms.get(row))])
    return rows


def _plot_images(plots: dict[str, Path]) -> str:
    """A section's plots, one line of images (a space between two renders as the line breaks did)."""
    return " ".join(f'<img src="{_e(path.name)}" alt="{_e(name)}">' for name, path in plots.items())


def _generation_section(data: dict[str, Any], plots: dict[str, Path]) -> str:
    header = ["row", "samples", *(GENERATION_LABELS[m] for m in GENERATION_METRICS), "ms / image"]
    status, ms = data["rows"], data["ms_per_image"]
    parts = ["<h2>Generation quality (Table I)</h2>",
             f"<p>{data['phantoms']} held-out phantoms (seed {data['heldout_seed']}), each drawn in every drawer style "
             f"({data['samples']} sketches, sketch seed {data['sketch_seed']}); T = {data['refinement_steps']}. "
             f"Perceptual distance: {_e(data['perceptual'])}. {_e(data['fid_features'])}. Fréchet on C: "
             f"{_e(data['frechet_c_features'])}. Reference set: {_e(data['reference_set'])}. "
             "Brackets: bootstrap 95 % intervals; KID ± its std over subsets.</p>"]
    for subset, by_row in data["table"].items():
        styles = ", ".join(data["unseen_styles"]) if subset == "unseen" else "the other named styles"
        parts.append(f"<h3>{_e(subset)} styles ({_e(styles)})</h3>")
        parts.append(_table(header, _generation_rows(by_row, status, ms), f"generation-{subset}"))
    parts.append(f'<h3>Fig. 3</h3><p>{_e(" | ".join(data["grid_columns"]))}; rows: {_e(", ".join(data["grid_styles"]))}</p>'
                 f'<img class="grid" src="{GRID_FILE}" alt="Fig. 3 grid">')
    rows = []
    for style, by_row in data["by_style"].items():
        rows += [[f'<td class="name">{_e(style)}</td>', *line] for line in _generation_rows(by_row, status, ms)
                 if 'class="notrun"' not in line[1]]
    parts.append("<h3>Per drawer style</h3>" + _table(["style", *header], rows, "generation-style"))
    rows = []
    for group, levels in data["by_level"].items():
        for level, by_row in levels.items():
            rows += [[f'<td class="name">{_e(group)} {_e(level)}</td>', *line]
                     for line in _generation_rows(by_row, status, ms) if 'class="notrun"' not in line[1]]
    parts.append("<h3>Per abstraction level</h3>" + _table(["styles, level", *header], rows, "generation-level"))
    return "\n".join([*parts, _plot_images(plots)] if plots else parts)


def _retrieval_rows(by_row: dict[str, Any], latency: dict[str, float], label: str) -> list[list[str]]:
    return [[f'<td class="name">{_e(label)}</td>', f'<td class="name">{_e(row)}</td>',
             *(_number(values.get(m)) for m in RETRIEVAL_METRICS), _number(latency.get(row))]
            for row, values in by_row.items()]


def _retrieval_section(data: dict[str, Any], plots: dict[str, Path]) -> str:
    latency = data.get("latency_ms_per_query", {})
    header = ["queries", "row", *RETRIEVAL_METRICS, "ms / query"]
    parts = ["<h2>Retrieval quality</h2>",
             f"<p>Archive of {data['archive_images']} images ({_e(data['archive'])}, seed {_e(data.get('archive_seed'))}); "
             f"held-out cases seed {_e(data.get('heldout_seed'))}; query seed {_e(data['seed'])}; canvases "
             f"{_e(data['canvases'])}. Fusion weights {_e(data['weights'])}, chosen on validation queries of the seen "
             f"styles only; unseen styles: {_e(', '.join(data['unseen_styles']))}. Latency: {_e(data.get('latency_note', ''))}. "
             "Brackets: bootstrap 95 % intervals.</p>"]
    rows = [line for style, by_row in data["test_styles"].items() for line in _retrieval_rows(by_row, latency, style)]
    parts.append("<h3>Per drawer style (test queries)</h3>" + _table(header, rows, "retrieval-style"))
    rows = [line for group, levels in data.get("by_level", {}).items() for level, by_row in levels.items()
            for line in _retrieval_rows(by_row, latency, f"{group} {level}")]
    parts.append("<h3>Per abstraction level</h3>" + _table(header, rows, "retrieval-level"))
    rows = [line for canvas, by_row in data.get("by_canvas", {}).items()
            for line in _retrieval_rows(by_row, latency, f"{canvas} px")]
    parts.append("<h3>Per canvas size</h3>" + _table(header, rows, "retrieval-canvas"))
    parts.append("<h3>Validation queries (chose the weights)</h3>"
                 + _table(header, _retrieval_rows(data["validation"], latency, "validation"), "retrieval-validation"))
    if "feedback" in data:
        parts.append(_feedback_section(data["feedback"]))
    return "\n".join([*parts, _plot_images(plots)] if plots else parts)


def _feedback_section(data: dict[str, Any]) -> str:
    """Relevance feedback (`s2m eval retrieval --feedback`): each round's figures, seen and unseen styles apart."""
    def said(name: str, value: Any) -> str:  # a constant, or the channel weights a refined search ranks by
        if isinstance(value, dict):
            return f"{name} (" + ", ".join(f"{channel} {weight:g}" for channel, weight in value.items()) + ")"
        return f"{name} the search's own" if value is None else f"{name} {value:g}"
    config = ", ".join(said(name, value) for name, value in data["config"].items())
    rows = [[f'<td class="name">{_e(name)}</td>', f'<td class="name">{_e(round_)}</td>',
             _number(values["diagnosis_precision@10"]), _number(values["exact_recall@10"])]
            for name in ("seen", "unseen") for round_, values in data[name]["rows"].items()]
    goals = "; ".join(f"{name}: {_e(goal)} {'met' if met else 'not met'}"
                      for name in ("seen", "unseen") for goal, met in data[name]["goals"].items())
    returned = sum(data[name]["not_this_returned"] for name in ("seen", "unseen"))
    return ("<h3>Relevance feedback (test queries)</h3>"
            f"<p>{_e(data['note'])}. Constants {_e(config)} ("
            f"{'the service' if data.get('chosen_is_served') else 'not the service'}'s defaults); first searches ranked by the weights above. "
            f"Cases marked not this that came back: {returned}. Goals: {goals}.</p>"
            + _table(["styles", "rounds", "diagnosis_precision@10", "exact_recall@10"], rows, "retrieval-feedback"))


def _interval(value: Any) -> tuple[float, float, float]:
    """(mean, lower error, upper error) of a summary or a plain number (no interval); NaN if absent."""
    if isinstance(value, dict):
        mean = value.get("mean")
        if mean is None:
            return float("nan"), 0.0, 0.0
        low, high = value.get("ci95", [mean, mean])
        return mean, mean - low, high - mean
    return (float("nan"), 0.0, 0.0) if value is None else (float(value), 0.0, 0.0)


def _plot(path: Path, title: str, panels: list[tuple[str, list[str], dict[str, list[Any]]]]) -> Path:
    """One PNG of side-by-side panels: (title, x labels, series name -> values with intervals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.3, top=0.82, wspace=0.25)  # fixed: tight_layout is slow
    for axis, (name, labels, series) in zip(axes[0], panels):
        x = np.arange(len(labels))
        width = 0.8 / max(len(series), 1)
        for i, (row, values) in enumerate(series.items()):
            points = np.array([_interval(v) for v in values]).reshape(-1, 3)
            axis.errorbar(x + (i - (len(series) - 1) / 2) * width, points[:, 0], yerr=points[:, 1:].T,
                          fmt="o-" if name.startswith("level") else "o", capsize=3, label=row)
        axis.set_xticks(x, labels, rotation=45 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
        axis.set_title(name)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(title)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def _panels(by_level: dict[str, dict[str, dict[str, Any]]], by_style: dict[str, dict[str, Any]],
            metric: str) -> list[tuple[str, list[str], dict[str, list[Any]]]]:
    panels = []
    for group, levels in by_level.items():
        labels = list(levels)
        if labels:
            rows = list(next(iter(levels.values())))
            panels.append((f"level, {group} styles", labels,
                           {row: [levels[level][row].get(metric) for level in labels] for row in rows}))
    styles = list(by_style)
    rows = list(next(iter(by_style.values()))) if styles else []
    panels.append(("per style", styles, {row: [by_style[s][row].get(metric) for s in styles] for row in rows}))
    return panels


def _generation_plots(data: dict[str, Any], folder: Path) -> dict[str, Path]:
    return {f"generation_{metric}": _plot(folder / f"generation_{metric}.png", GENERATION_LABELS[metric],
                                          _panels(data["by_level"], data["by_style"], metric))
            for metric in GENERATION_METRICS}


def _retrieval_plots(data: dict[str, Any], folder: Path) -> dict[str, Path]:
    plots = {}
    for metric in RETRIEVAL_METRICS:
        name = "retrieval_" + metric.replace("@", "_at_")
        panels = _panels(data.get("by_level", {}), data["test_styles"], metric)
        canvases = data.get("by_canvas", {})
        if canvases:
            labels = sorted(canvases, key=int)
            rows = list(canvases[labels[0]])
            panels.append(("canvas side (px)", labels, {row: [canvases[c][row].get(metric) for c in labels] for row in rows}))
        plots[name] = _plot(folder / f"{name}.png", metric, panels)
    return plots
