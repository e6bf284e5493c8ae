"""`s2m eval signs`: the editing quality of the sign directions in W, on held-out w (issue 38).

For each sign, G's pictures of held-out w (a seed no sign training uses) are edited at the
strengths a picture draws (-1, the sign said absent, to 1 in even steps: the W edit stops growing
at 1 either way, though a query may ask more for the appearance edit that ranks) with the sign's
W edit as the product applies it (its chosen style inputs, its mix of the signs' own edits), and
read three ways: the sign classifier stored with the directions (a probe on C's descriptors) must
rise monotonically over the whole range; S's masks of the region classes the sign does not live on
must stay put (mean DICE edited vs unedited >= 0.9 at every strength); the other signs' classifiers
must move by less than a quarter of the edited sign's own move (its rise, or its fall when absent).
FID (Inception) of the edited pictures (at 1 and at -1) beside the unedited ones says how far the
edit takes G off its own distribution; the FID of two
unedited sets of the same size is the floor it is read against. One command writes the JSON, the
figure (rows signs, columns strengths) and the Markdown page, so it is redone in one step when G
or the directions change.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from formats.errors import InputError
from generation.bundle import EMBEDDER, GENERATOR, SYNTHESIZER, Bundle
from generation.metrics import InceptionFeatures, frechet_distance
from generation.sign_conditions import other_dice
from generation.sign_training import SignProbes, edited, sample_w, synthesize
from generation.signs import MAX_STRENGTH, SignDirections
from generation.training import save_image_grid

HELDOUT_W_SEED = 90_210  # never one of `s2m train signs`' streams (its seed + 0 .. 3)
DICE_GOAL, OTHERS_GOAL = 0.9, 0.25


@dataclass(frozen=True)
class SignEditConfig:
    """How many held-out w are read, at how many strengths, and how many go into FID."""

    samples: int = 64  # held-out w the classifiers and S read at every strength
    strengths: int = 5  # the picture's range 0 .. 1 in even steps, mirrored to -1 (absent): 2n - 1 columns of the figure
    fid_samples: int = 200  # w of the FID sets (edited at the largest strength, and two unedited sets)
    figure_rows: int = 1  # held-out w shown per sign in the figure
    seed: int = HELDOUT_W_SEED
    batch_size: int = 64


def evaluate_sign_edits(model: Path, config: SignEditConfig, with_fid: bool = True,
                        progress: Callable[[str], None] = lambda _: None) -> tuple[dict[str, Any], torch.Tensor]:
    """The report (per sign: scores by strength, other classes' DICE, other signs' moves, FID, goals)
    and the figure's pictures [signs * rows * strengths, 3, R, R]."""
    bundle = Bundle.open(model)
    directions = SignDirections.from_bundle(bundle)
    if directions is None or not directions.current:
        raise InputError(f"{model} has no current sign directions; run `s2m train signs` first")
    probes = directions.probes()
    if not probes:
        raise InputError(f"the sign directions of {model} were stored without their classifiers; "
                         f"run `s2m train signs` again to measure their editing quality")
    bundle.check([GENERATOR, EMBEDDER, SYNTHESIZER])
    generator, embedder, synthesizer = bundle.load(GENERATOR), bundle.load_embedder(), bundle.load(SYNTHESIZER)
    num_ws = generator.synthesis.num_ws
    strengths = [float(s) for s in np.linspace(-MAX_STRENGTH, MAX_STRENGTH, 2 * config.strengths - 1)]  # where the W edit stops
    reader = SignProbes(generator, embedder, probes, synthesizer, config.batch_size)
    w = sample_w(generator, config.samples, config.seed)
    before, plain_masks = reader.plain(w)
    assert plain_masks is not None
    signs: dict[str, Any] = {}
    figure: list[torch.Tensor] = []
    for sign in directions.names:
        progress(f"  {sign}: {len(strengths)} strengths on {config.samples} held-out w")
        unit = directions.style_offset({sign: 1.0}, num_ws, ("w",))
        scores, moves, dice = [], [], []
        for strength in strengths:
            after, masks = (before, plain_masks) if strength == 0 else reader.read(edited(w, strength * unit))
            assert masks is not None
            scores.append(float(after[sign].mean()))
            moves.append({name: float((after[name] - before[name]).mean()) for name in probes if name != sign})
            dice.append(other_dice(masks, plain_masks, sign))
        figure += [synthesize(generator, edited(w[row:row + 1], strength * unit))
                   for row in range(config.figure_rows) for strength in strengths]
        signs[sign] = judge(sign, strengths, scores, moves, dice, directions.layers[sign])
        signs[sign]["layer_set"] = directions.record.get("layer_choice", {}).get(sign, {}).get("chosen", "all")
        if directions.mix is not None:
            signs[sign]["mix"] = {other: round(float(share), 4) for other, share in
                                  zip(directions.names, directions.mix[directions.names.index(sign)]) if share}
    report: dict[str, Any] = {"strengths": strengths, "signs": signs, "config": asdict(config),
                              "bundle": {"version": bundle.version, "generator": bundle.digest(GENERATOR)[:16]}}
    if with_fid:
        progress(f"FID (Inception) of {config.fid_samples} edited pictures beside unedited ones")
        report["fid"] = edit_fid(generator, directions, config, strengths[-1])
        for sign in directions.names:
            signs[sign]["fid_at_largest"] = report["fid"]["signs"][sign]
            signs[sign]["fid_at_absent"] = report["fid"]["absent"][sign]
    return report, torch.cat(figure)


def judge(sign: str, strengths: list[float], scores: list[float], moves: list[dict[str, float]],
          dice: list[dict[str, float]], layers: tuple[int, ...] | None) -> dict[str, Any]:
    """One sign's row: its figures by strength (ascending, 0 among them) and whether each goal holds at every
    strength a picture draws; a move counts against the sign's own move away from strength 0 (up when
    present, down when absent; the wrong way is an infinite ratio)."""
    zero = strengths.index(0.0)
    moved = [(strength, score - scores[zero], move, one) for strength, score, move, one in zip(strengths, scores, moves, dice)
             if strength != 0.0]
    ratios = [max((abs(v) for v in move.values()), default=0.0) / abs(own) if own * strength > 0 else float("inf")
              for strength, own, move, _ in moved]
    smallest_dice = [min(one.values(), default=1.0) for *_, one in moved]
    goals = {"monotone": bool(all(np.diff(scores) > 0)),
             "other_regions_dice": bool(min(smallest_dice, default=1.0) >= DICE_GOAL),
             "other_signs_below_quarter": bool(max(ratios, default=0.0) < OTHERS_GOAL)}
    return {"score_by_strength": [round(s, 4) for s in scores], "layers": None if layers is None else list(layers),
            "smallest_other_dice_by_strength": [round(d, 4) for d in smallest_dice],
            "other_dice_at_largest": {name: round(v, 4) for name, v in dice[-1].items()},
            "other_dice_at_absent": {name: round(v, 4) for name, v in dice[0].items()},
            "largest_other_move_ratio_by_strength": [round(r, 4) for r in ratios],
            "other_moves_at_largest": {name: round(v, 4) for name, v in moves[-1].items()},
            "goals": goals, "flags": [goal for goal, held in goals.items() if not held]}


@torch.no_grad()
def edit_fid(generator: torch.nn.Module, directions: SignDirections, config: SignEditConfig, strength: float) -> dict[str, Any]:
    """FID of each sign's edited pictures (at `strength`, and at minus it: "absent") against unedited pictures
    of the same w, and the floor: FID between the unedited pictures and those of other held-out w."""
    inception = InceptionFeatures(config.batch_size)
    num_ws = generator.synthesis.num_ws
    w = sample_w(generator, config.fid_samples, config.seed + 1)
    other = sample_w(generator, config.fid_samples, config.seed + 2)

    def features(ws: torch.Tensor) -> np.ndarray:
        return torch.cat([inception.embed(synthesize(generator, ws[i:i + config.batch_size]))
                          for i in range(0, len(ws), config.batch_size)]).numpy()

    plain = features(w)

    def fid(one: float) -> dict[str, float]:
        return {sign: round(frechet_distance(features(edited(w, directions.style_offset({sign: one}, num_ws, ("w",)))),
                                             plain), 2) for sign in directions.names}

    return {"images": config.fid_samples, "strength": strength, "floor_unedited_vs_other_w": round(
        frechet_distance(features(other), plain), 2), "signs": fid(strength), "absent": fid(-strength)}


def write_outputs(report: dict[str, Any], pictures: torch.Tensor, figure: Path, page: Path | None, command: str,
                  note: str) -> None:
    """The figure (rows signs x held-out w, columns strengths, 2x upscaled) and, when asked, the Markdown page."""
    figure.parent.mkdir(parents=True, exist_ok=True)
    columns = len(report["strengths"])
    save_image_grid(torch.nn.functional.interpolate(pictures, scale_factor=2, mode="nearest"), figure, nrow=columns)
    if page is not None:
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(markdown(report, figure, page, command, note))


def markdown(report: dict[str, Any], figure: Path, page: Path, command: str, note: str) -> str:
    """The page docs link to: what was run where, the table, and which goals hold."""
    strengths = ", ".join(f"{s:g}" for s in report["strengths"])
    fid = report.get("fid")
    lines = [
        "# Editing quality of the sign directions in W (issue 38)", "",
        "Written by the command below; redo it whenever G or the sign directions change.", "",
        f"    {command}", "",
        f"Measured {report['measured']}, {note}; bundle version {report['bundle']['version']}, "
        f"G {report['bundle']['generator']}; {report['config']['samples']} held-out w (seed {report['config']['seed']}, "
        f"never a training or validation stream), strengths {strengths} (a picture's range: the W edit stops at 1 "
        f"either way; below 0 the sign is said absent), {report['seconds']} s.", "",
        f"![sign edits]({os.path.relpath(figure, page.parent)})", "",
        f"Rows: {', '.join(report['signs'])} (top to bottom); columns: strengths {strengths}.", "",
        "| sign | layers | mixed with | classifier score by strength | monotone | smallest other-class DICE (absent / present) "
        "| largest other-sign move / own move | FID absent / present |", "|---|---|---|---|---|---|---|---|",
    ]
    for sign, row in report["signs"].items():
        dice = row["smallest_other_dice_by_strength"]
        ratio = max(row["largest_other_move_ratio_by_strength"], default=0.0)
        layers = "all" if row["layers"] is None else ",".join(map(str, row["layers"]))
        mixed = ", ".join(f"{other} {share:+.2f}" for other, share in row.get("mix", {}).items() if other != sign) or "-"
        lines.append(f"| {sign} | {row.get('layer_set', 'all')} ({layers}) | {mixed} "
                     f"| {' / '.join(f'{s:.2f}' for s in row['score_by_strength'])} | {'yes' if row['goals']['monotone'] else '**no**'} "
                     f"| {min(dice, default=1.0):.3f} ({dice[0] if dice else 1.0:.3f} / {dice[-1] if dice else 1.0:.3f}) | {ratio:.2f} "
                     f"| {row.get('fid_at_absent', '-')} / {row.get('fid_at_largest', '-')} |")
    if fid:
        below = all(value < fid["floor_unedited_vs_other_w"] for value in fid["signs"].values())
        below = below and all(value < fid["floor_unedited_vs_other_w"] for value in fid.get("absent", {}).values())
        lines += ["", f"FID: {fid['images']} pictures edited at strength -{fid['strength']:g} and {fid['strength']:g} against "
                  f"the same w unedited; the floor (unedited against other held-out w) is {fid['floor_unedited_vs_other_w']}"
                  + (": every edit stays below it, so at this sample size an edit moves the set less than drawing "
                     "other w does." if below else ".")]
    held = {goal: [s for s, row in report["signs"].items() if row["goals"][goal]] for goal in
            ("monotone", "other_regions_dice", "other_signs_below_quarter")}
    words = {"monotone": "score rises monotonically", "other_regions_dice": f"other classes' DICE >= {DICE_GOAL}",
             "other_signs_below_quarter": f"other signs move < {OTHERS_GOAL:g} of the rise"}
    lines += ["", "Goals (every strength a picture draws, absent and present):", ""]
    for goal, signs in held.items():
        missed = [s for s in report["signs"] if s not in signs]
        lines.append(f"- {words[goal]}: holds for {', '.join(signs) or 'no sign'}"
                     + (f"; **not** for {', '.join(missed)}" if missed else ""))
    return "\n".join(lines) + "\n"


def run_sign_edit_eval(model: Path, config: SignEditConfig, with_fid: bool,
                       progress: Callable[[str], None]) -> tuple[dict[str, Any], torch.Tensor]:
    """`evaluate_sign_edits` with when, how long and the machine's load around it."""
    started, load = time.perf_counter(), os.getloadavg()[0]
    report, pictures = evaluate_sign_edits(model, config, with_fid, progress)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["measured"] = (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) + f", {os.cpu_count()} CPU cores, "
                          f"load average {load:.1f} before / {os.getloadavg()[0]:.1f} after, "
                          f"{torch.get_num_threads()} torch thread(s)")
    return report, pictures
