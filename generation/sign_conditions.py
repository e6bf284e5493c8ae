"""Conditional manipulation of the sign directions in W: what an edit must leave alone, and where it goes.

A sign's boundary normal in W also carries shape: G's samples with exudate may happen to have
bigger tonsils, so "more exudate" would grow them. As InterFaceGAN's conditional manipulation
does, every sign direction is made orthogonal to the directions in W that predict the shape of
G's picture (area and centre of each region class in S's masks of G(w), linear boundaries fitted
on G's samples) and to the other signs' directions. A shape that a sign is about (the tonsils'
size for tonsils_enlarged, the uvula's position for uvula_deviation) is not held fixed, or that
sign would lose what it is. Where G draws a sign only together with the anatomy (its tonsils grow
with the whole throat), conditioning leaves it nothing to move; such a sign may instead keep the
anatomy's directions and be made orthogonal to the other signs only, which validation allows when
its edit still keeps the other regions in place. Per sign, on validation w and never on the w a
report measures, an edit is chosen: the style inputs of G it reaches (coarse, middle or fine layers,
or a run of them), how far a full-strength edit goes (the whole step, or half of it where the whole
one moves the anatomy) and that conditioning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from formats.categories import CATEGORY_NAMES, PHARYNGEAL_WALL, TONGUE, TONSIL, UVULA

SHAPE_ATTRIBUTES = ("area", "x", "y")  # per region class: share of the picture, centre column, centre row
# the region classes each sign lives on: their masks may change under its edit; the OTHER classes must stay
SIGN_REGIONS: dict[str, tuple[int, ...]] = {
    "exudate": (TONSIL,), "erythema": (), "cobblestoning": (PHARYNGEAL_WALL,), "tonsils_enlarged": (TONSIL,),
    "coated_tongue": (TONGUE,), "uvula_deviation": (UVULA,),
}
# shapes that are what a sign is (never held fixed for any sign: the mutual orthogonality of the
# signs keeps the other signs off them); enlarged tonsils cover the wall behind them, so the wall's
# visible area is part of tonsils_enlarged
SIGN_SHAPES: tuple[str, ...] = ("tonsil_area", "tonsil_x", "tonsil_y", "pharyngeal_wall_area", "uvula_x")
LAYER_GROUPS = ("coarse", "middle", "fine")
STEP_SCALES = (1.0, 0.5)  # shares of a sign's step a full-strength edit may take
ANATOMY, SIGNS_ONLY = "anatomy", "signs_only"  # what a direction is made orthogonal to: shapes and signs, or signs
CONDITIONINGS = (ANATOMY, SIGNS_ONLY)


def shape_names() -> tuple[str, ...]:
    """The shape attributes read from S's masks, `<class>_<attribute>`, in category-id order."""
    return tuple(f"{CATEGORY_NAMES[c]}_{a}" for c in sorted(CATEGORY_NAMES) for a in SHAPE_ATTRIBUTES)


def other_regions(sign: str) -> tuple[int, ...]:
    """The region classes (category ids) a sign's edit must leave in place."""
    return tuple(c for c in sorted(CATEGORY_NAMES) if c not in SIGN_REGIONS.get(sign, ()))


@torch.no_grad()
def region_masks(synthesizer: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """S's masks of images [N, 3, H, W] in [-1, 1], one union per region class: bool [N, classes, H, W]
    (classes in category-id order; an instance below S's score threshold counts as absent)."""
    categories = sorted(CATEGORY_NAMES)
    out = np.zeros((len(images), len(categories), *images.shape[-2:]), dtype=bool)
    for start in range(0, len(images), batch_size):
        for row, instances in enumerate(synthesizer.predict(images[start:start + batch_size])):
            for instance in instances:
                out[start + row, categories.index(instance.category)] |= instance.mask
    return out


def shape_attributes(masks: np.ndarray) -> np.ndarray:
    """Masks [N, classes, H, W] -> [N, classes * 3] (area share, centre x, centre y in [0, 1]; NaN where absent)."""
    n, classes, height, width = masks.shape
    area = masks.reshape(n, classes, -1).sum(-1).astype(np.float64)
    ys, xs = np.arange(height) / max(height - 1, 1), np.arange(width) / max(width - 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (masks.sum(2) * xs).sum(-1) / area
        y = (masks.sum(3) * ys).sum(-1) / area
    area_share = area / (height * width)
    return np.stack([area_share, np.where(area > 0, x, np.nan), np.where(area > 0, y, np.nan)], -1).reshape(n, -1)


def dice_by_class(edited: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """Per image and class DICE [N, classes] of two mask sets [N, classes, H, W] (1 where both are empty)."""
    overlap = (edited & plain).reshape(*edited.shape[:2], -1).sum(-1)
    total = edited.reshape(*edited.shape[:2], -1).sum(-1) + plain.reshape(*plain.shape[:2], -1).sum(-1)
    return np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)


def other_dice(edited: np.ndarray, plain: np.ndarray, sign: str) -> dict[str, float]:
    """Mean DICE over the images of each region class `sign` must leave in place (edited vs unedited masks)."""
    dice = dice_by_class(edited, plain).mean(0)
    categories = sorted(CATEGORY_NAMES)
    return {CATEGORY_NAMES[c]: float(dice[categories.index(c)]) for c in other_regions(sign)}


@dataclass(frozen=True)
class ShapeDirections:
    """Unit directions [K, w_dim] in W that predict shape attributes of G(w), with their held-out R^2."""

    names: tuple[str, ...]
    directions: torch.Tensor
    r2: dict[str, float]  # every attribute's held-out R^2, kept or not

    def basis(self) -> torch.Tensor:
        """An orthonormal basis [r, w_dim] of the span of the kept directions (r <= K)."""
        if not self.names:
            return torch.zeros(0, self.directions.shape[1])
        u, s, vt = torch.linalg.svd(self.directions.double(), full_matrices=False)
        return vt[s > 1e-6 * s[0]].float()


def fit_shape_directions(w: torch.Tensor, attributes: np.ndarray, names: tuple[str, ...], min_r2: float,
                         ridge: float = 1e-2, holdout: float = 0.25, seed: int = 0) -> ShapeDirections:
    """Per attribute a ridge regression of its standardised value on w (samples where it is defined),
    kept when its held-out R^2 reaches `min_r2`: the attribute's gradient in W is then a shape-carrying
    direction. Attributes of `SIGN_SHAPES` are measured but never kept."""
    rng = np.random.default_rng(seed)
    kept, directions, r2 = [], [], {}
    x_all = w.double().numpy()
    for column, name in enumerate(names):
        defined = np.isfinite(attributes[:, column])
        x, y = x_all[defined], attributes[defined, column]
        if len(y) < 20 or y.std() == 0:
            r2[name] = float("nan")
            continue
        order = rng.permutation(len(y))
        held = max(int(len(y) * holdout), 1)
        test, train = order[:held], order[held:]
        beta = ridge_fit(x[train], y[train], ridge)
        centre, mean_y, sd_y = x[train].mean(0), y[train].mean(), y[train].std()
        predicted = (x[test] - centre) @ beta * sd_y + mean_y  # beta is in standard deviations of y
        r2[name] = float(1 - ((y[test] - predicted) ** 2).sum() / max(((y[test] - y[test].mean()) ** 2).sum(), 1e-12))
        if r2[name] >= min_r2 and name not in SIGN_SHAPES:
            kept.append(name)
            directions.append(torch.from_numpy(beta / max(np.linalg.norm(beta), 1e-12)).float())
    stacked = torch.stack(directions) if directions else torch.zeros(0, w.shape[1])
    return ShapeDirections(tuple(kept), stacked, r2)


def ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Coefficients [D] of y on centred x, with the penalty `ridge` times the mean input variance."""
    centred, target = x - x.mean(0), (y - y.mean()) / y.std()
    gram = centred.T @ centred
    penalty = ridge * np.trace(gram) / gram.shape[0]
    return np.linalg.solve(gram + penalty * np.eye(gram.shape[0]), centred.T @ target)


def project_out(normals: torch.Tensor, shape_basis: torch.Tensor) -> torch.Tensor:
    """Sign normals [S, D] with the shape-carrying span (orthonormal rows [r, D]) projected out, unit rows.
    Making them mutually orthogonal afterwards (Löwdin) only mixes these rows, so the result stays
    orthogonal to the shape span."""
    basis = shape_basis.double()
    projected = normals.double() - (normals.double() @ basis.T) @ basis
    lengths = projected.norm(dim=1)
    if (lengths < 1e-6).any():
        raise ValueError("a sign's direction in W lies within the shape-carrying directions")
    return (projected / lengths[:, None]).float()


def layer_candidates(num_ws: int) -> dict[str, tuple[int, ...]]:
    """G's style inputs split into coarse, middle and fine thirds; the candidates are every run of them."""
    groups = [tuple(int(i) for i in part) for part in np.array_split(np.arange(num_ws), len(LAYER_GROUPS))]
    candidates = {}
    for first in range(len(groups)):
        for last in range(first, len(groups)):
            name = "+".join(LAYER_GROUPS[first:last + 1])
            candidates["all" if (first, last) == (0, len(groups) - 1) else name] = sum(groups[first:last + 1], ())
    return candidates


def layer_mask(layers: tuple[int, ...] | None, num_ws: int) -> torch.Tensor:
    """[num_ws] 1 at the edited style inputs (all when `layers` is None)."""
    mask = torch.zeros(num_ws) if layers is not None else torch.ones(num_ws)
    if layers is not None:
        mask[list(layers)] = 1.0
    return mask


@dataclass(frozen=True)
class EditCandidate:
    """One way a sign's full-strength edit may go: the style inputs it reaches, the share of the sign's
    step it takes and the conditioning of its direction."""

    layers: tuple[int, ...]
    scale: float
    conditioning: str


def edit_candidates(num_ws: int) -> dict[str, EditCandidate]:
    """Every run of layers with every step share and conditioning, named `layers[ xSCALE][ signs only]`."""
    return {name + ("" if scale == 1.0 else f" x{scale:g}") + ("" if conditioning == ANATOMY else " signs only"):
            EditCandidate(layers, scale, conditioning)
            for name, layers in layer_candidates(num_ws).items() for scale in STEP_SCALES for conditioning in CONDITIONINGS}


Measure = Callable[[str, EditCandidate], Mapping[str, float]]


def choose_edits(signs: tuple[str, ...], candidates: Mapping[str, EditCandidate], measure: Measure,
                 quarter: float = 0.25, min_dice: float = 0.9) -> tuple[dict[str, EditCandidate], dict[str, Any]]:
    """Per sign the candidate whose edit at full strength on validation w raises the sign's score, keeps the
    other regions in place (mean DICE >= `min_dice` for every other class, when `measure` gives other_dice:
    with S) and moves the other signs by at most `quarter` of the rise; among those the largest rise. Goals
    are given up in the reverse order (cross-sign first, then DICE) when no candidate meets them all, and
    the evidence says which were met."""
    chosen, evidence = {}, {}
    for sign in signs:
        measured = {name: dict(measure(sign, candidate)) for name, candidate in candidates.items()}
        met = {name: (m["rise"] > 0, m.get("other_dice", 1.0) >= min_dice, m["largest_other_move"] <= quarter * m["rise"])
               for name, m in measured.items()}
        best = max(measured, key=lambda name: (*met[name], measured[name]["rise"]))
        evidence[sign] = {"chosen": best, "rises": met[best][0], "dice_met": met[best][1], "others_met": met[best][2],
                          "candidates": {name: {k: round(float(v), 4) for k, v in m.items()} for name, m in measured.items()}}
        chosen[sign] = candidates[best]
    return chosen, evidence


def compensating_mix(response: np.ndarray, ridge: float) -> np.ndarray:
    """The mix [S, S] that cancels, to first order, what G draws together: `response[k, j]` is the mean move
    of sign k's classifier under sign j's own edit at strength 1 (validation w). Row i combines the signs'
    own edits so that the classifiers move by sign i's own rise alone, with a ridge pulling the row back to
    sign i's own edit (`ridge` times the response's mean squared column norm): G is not linear in the signs,
    so a smaller correction can hold where the exact inverse overshoots. A sign that does not rise under its
    own edit keeps its own edit (identity row)."""
    count = len(response)
    gram = response.T @ response
    penalty = ridge * np.trace(gram) / count
    mix = np.eye(count)
    for row in range(count):
        if response[row, row] > 0:
            target = response[row, row] * np.eye(count)[row]
            mix[row] = np.linalg.solve(gram + penalty * np.eye(count), response.T @ target + penalty * np.eye(count)[row])
    return mix
