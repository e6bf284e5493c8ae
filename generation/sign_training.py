"""`s2m train signs`: learn each clinical sign's direction in G's W and in C's space from a labelled archive.

Labelled archive images only (their findings and tonsil grade, `formats.signs`); the ways are the
established ones (InterFaceGAN): a linear probe per sign on C's descriptors of the archive (the
monitor's `LinearProbe`), then w sampled from the mapping network, G(w) labelled by those probes,
a linear boundary per sign fitted in W, and the normals conditioned (`generation.sign_conditions`):
the directions in W that predict the shape of S's masks of G(w) projected out, then the signs made
mutually orthogonal (symmetric orthogonalisation: no sign is privileged by its order), so that one
sign's edit moves neither the drawn anatomy nor the other signs more than W allows (conditional
manipulation). Each sign's edit (the style inputs of G it reaches, the share of its step, and whether
its direction holds the anatomy fixed or only the other signs) is chosen on validation w (their own
seed, never the fresh w the quality is measured on). Mutually orthogonal directions still move each
other's classifiers where G draws signs together (more exudate also reddens); on the same validation
w each sign's edit is measured on every classifier, and a sign's edit becomes the mix of the signs'
own edits that cancels those moves to first order (`compensating_mix`), kept where it lowers the
other signs' largest move without losing the rise or the anatomy. The probes are stored with the directions, so the
editing quality can be measured again later (`s2m eval signs`). In C's space a sign's direction
is the normalised difference of the class means of the archive descriptors. Every figure recorded
is measured on data the fit did not see: held-out archive images for the probes, fresh w for the
W edits. Minutes on a CPU at the shipped size, so it is not resumable; it prints its progress.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from generation.bundle import EMBEDDER, GENERATOR, SYNTHESIZER, Bundle
from generation.data import dataset_fingerprint
from generation.sign_conditions import (ANATOMY, SIGNS_ONLY, EditCandidate, ShapeDirections, choose_edits,
                                        compensating_mix, edit_candidates, fit_shape_directions, layer_mask, other_dice,
                                        project_out, region_masks, shape_attributes, shape_names)
from generation.signs import LAYERS, PROBE_KEYS, ROUTES, SignDirections
from generation.stylegan2.monitor import LinearProbe, auc, read_sign_labels

Progress = Callable[[str], None]
MIN_CLASS = 5  # fewer samples than this on either side of a sign leave it without a direction
MIX_RIDGES = (0.01, 0.1, 1.0)  # how far a sign's mixed edit may stray from its own (`compensating_mix`), tried on validation w


@dataclass(frozen=True)
class SignTrainConfig:
    """What `s2m train signs` reads and how it fits; recorded in the bundle beside the directions."""

    probe_images: int = 2000  # labelled archive images (the first ones, in file order)
    probe_holdout: float = 0.25  # share of them kept to measure the probes and the appearance directions
    probe_weight_decay: float = 1e-3
    probe_iterations: int = 200
    w_samples: int = 2000  # w from the mapping network, labelled by the probes through G and C
    check_samples: int = 64  # fresh w the W edits are measured on
    check_strengths: int = 7  # strengths 0 .. 1 the monotonicity is read at
    w_step_sd: float = 3.0  # strength 1 moves this many standard deviations of the samples' projection
    shape_min_r2: float = 0.2  # held-out R^2 from which a shape attribute's direction in W is held fixed
    validation_samples: int = 48  # validation w the edited layers are chosen on (S needed for its DICE)
    appearance_weight: float = 1.0  # the appearance channel's weight in sign queries
    seed: int = 0
    batch_size: int = 100


def train_signs(bundle: Bundle, archive: Path, config: SignTrainConfig, progress: Progress = lambda _: None) -> SignDirections:
    """The sign directions of `bundle`'s G and C learned from `archive`; nothing is written (see `save`)."""
    bundle.check([GENERATOR, EMBEDDER])
    generator, embedder = bundle.load(GENERATOR), bundle.load_embedder()
    progress(f"reading and describing up to {config.probe_images} labelled archive images")
    images, labels = read_sign_labels(archive, config.probe_images)
    descriptors = embedder.describe(images, config.batch_size)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(config.seed))
    held = int(len(images) * config.probe_holdout)
    test, train = order[:held], order[held:]
    probes: dict[str, LinearProbe] = {}
    quality: dict[str, dict[str, Any]] = {}
    appearance: dict[str, torch.Tensor] = {}
    appearance_steps: dict[str, float] = {}
    for sign, y in labels.items():
        if min(int(y[train].sum()), int((~y[train]).sum())) < MIN_CLASS:
            quality[sign] = {"skipped": "too few archive images with and without it"}
            continue
        probe = LinearProbe.fit(descriptors[train], y[train], config.probe_weight_decay, config.probe_iterations)
        probes[sign] = probe
        gap = descriptors[train][y[train]].mean(0) - descriptors[train][~y[train]].mean(0)
        appearance[sign], appearance_steps[sign] = gap / gap.norm().clamp_min(1e-12), float(gap.norm())
        quality[sign] = {"prevalence": float(y.float().mean()),
                         "probe_auc": auc(probe.logits(descriptors[test]).numpy(), y[test].numpy()),
                         "appearance_auc": auc((descriptors[test] @ appearance[sign]).numpy(), y[test].numpy())}
        progress(f"  {sign}: probe AUC {quality[sign]['probe_auc']:.3f} on {held} held-out images")
    names = tuple(probes)
    if not names:
        raise ValueError(f"no sign has {MIN_CLASS} archive images with it and without it in {archive}")
    synthesizer = bundle.load(SYNTHESIZER) if bundle.has(SYNTHESIZER) else None
    progress(f"sampling {config.w_samples} w and labelling G(w) with the probes"
             + (" and S" if synthesizer is not None else " (no S in the bundle: no shape is held fixed)"))
    w = sample_w(generator, config.w_samples, config.seed + 1)
    scores = probe_scores(generator, embedder, w, probes, config.batch_size)
    normals, labelling = {}, {}
    for sign in names:
        normals[sign], labelling[sign] = boundary_normal(w, scores[sign], config)
    normal_rows = torch.stack([normals[sign] for sign in names])
    shapes = shape_directions(generator, synthesizer, w, config)
    conditioned = {ANATOMY: orthonormalise(project_out(normal_rows, shapes.basis())), SIGNS_ONLY: orthonormalise(normal_rows)}
    steps = {name: tuple(config.w_step_sd * float((w @ direction).std()) for direction in rows) for name, rows in conditioned.items()}
    sign_probes = SignProbes(generator, embedder, probes, synthesizer, config.batch_size)
    validation = sample_w(generator, config.validation_samples, config.seed + 3)
    num_ws = generator.synthesis.num_ws
    progress(f"choosing each sign's edit of G (layers, step, conditioning) on {config.validation_samples} validation w")
    choice, layer_choice = choose_edits(names, edit_candidates(num_ws), lambda sign, candidate: (
        sign_probes.measure(validation, sign, edit_of(conditioned, steps, names, sign, candidate, num_ws))))
    w_directions = torch.stack([conditioned[choice[sign].conditioning][row] for row, sign in enumerate(names)])
    w_steps = tuple(choice[sign].scale * steps[choice[sign].conditioning][row] for row, sign in enumerate(names))
    layers = {sign: choice[sign].layers for sign in names}
    appearance_rows = torch.stack([appearance[sign] for sign in names])
    unmixed = SignDirections(names, w_directions, appearance_rows, w_steps, tuple(appearance_steps[sign] for sign in names),
                             config.appearance_weight, ROUTES, {LAYERS: {sign: list(layers[sign]) for sign in names}})
    progress("measuring each sign's edit on every classifier, and the mix that cancels the other signs' moves")
    mix, mixing = choose_mix(sign_probes, validation, unmixed, num_ws)
    progress(f"measuring the W edits on {config.check_samples} fresh w")
    fresh = sample_w(generator, config.check_samples, config.seed + 2)
    mixed = dataclasses.replace(unmixed, mix=mix)
    for row, sign in enumerate(names):
        step = mixed.style_offset({sign: 1.0}, num_ws, ("w",))
        quality[sign].update(labelling[sign], **conditioning_record(normal_rows, w_directions, row, shapes.directions),
                             w_auc_fresh=direction_auc(generator, embedder, probes[sign], fresh, w_directions[row], config),
                             **edit_quality(generator, embedder, probes, fresh, sign, step, config))
        progress(f"  {sign}: edit {layer_choice[sign]['chosen']}, probe score along W, "
                 f"Spearman {quality[sign]['w_spearman']:.2f}")
    record = {"data_fingerprint": dataset_fingerprint(archive), "archive_images": len(images),
              "learned_with": {GENERATOR: bundle.digest(GENERATOR), EMBEDDER: bundle.digest(EMBEDDER)},
              "config": asdict(config), "quality": quality, LAYERS: {sign: list(layers[sign]) for sign in names},
              "layer_choice": layer_choice, "mixing": mixing,
              "shape_conditions": {"held_fixed": list(shapes.names), "min_r2": config.shape_min_r2,
                                   "r2": {name: round(value, 4) for name, value in shapes.r2.items()},
                                   "with": SYNTHESIZER if synthesizer is not None else "none (the bundle has no S)"}}
    return dataclasses.replace(mixed, record=record, probe_tensors=stack_probes([probes[sign] for sign in names]))


def choose_mix(sign_probes: SignProbes, validation: torch.Tensor, unmixed: SignDirections,
               num_ws: int) -> tuple[torch.Tensor | None, dict[str, Any]]:
    """The mix [S, S] of the signs' own W edits (`SignDirections.mix`), chosen on validation w: each sign's
    edit is read by every classifier, `compensating_mix` inverts that response at each ridge of `MIX_RIDGES`,
    and a sign takes the row with the smallest largest-other-sign move per rise among those whose rise stays
    at least half its own edit's and whose other regions' DICE stays at least what its own edit keeps (or
    >= 0.9), when that is smaller than its own edit's. None when no sign takes one."""
    names = unmixed.names
    own = {sign: sign_probes.measure(validation, sign, unmixed.style_offset({sign: 1.0}, num_ws, ("w",)), every=True)
           for sign in names}
    response = np.array([[own[edited_sign]["moves"][read] for edited_sign in names] for read in names])

    def ratio(measured: dict[str, Any]) -> float:
        return measured["largest_other_move"] / measured["rise"] if measured["rise"] > 0 else float("inf")

    proposals = {ridge: compensating_mix(response, ridge) for ridge in MIX_RIDGES}
    rows, evidence = np.eye(len(names)), {}
    for row, sign in enumerate(names):
        before, best, tried = own[sign], None, {}
        for ridge, mixes in proposals.items():
            proposed = mixes[row]
            trial_rows = np.eye(len(names))
            trial_rows[row] = proposed
            trial = dataclasses.replace(unmixed, mix=torch.from_numpy(trial_rows).float())
            after = sign_probes.measure(validation, sign, trial.style_offset({sign: 1.0}, num_ws, ("w",)))
            tried[str(ridge)] = {"shares": [round(float(v), 4) for v in proposed], **{k: round(float(v), 4) for k, v in after.items()}}
            usable = after["rise"] >= 0.5 * before["rise"] and after.get("other_dice", 1.0) >= min(before.get("other_dice", 1.0), 0.9)
            if usable and ratio(after) < (ratio(before) if best is None else best[0]):
                best = (ratio(after), ridge, proposed)
        if best is not None:
            rows[row] = best[2]
        evidence[sign] = {"ridge": None if best is None else best[1], "own_edit": {k: round(float(v), 4) for k, v in before.items()
                                                                                  if k != "moves"}, "tried": tried}
    mix = None if np.array_equal(rows, np.eye(len(names))) else torch.from_numpy(rows).float()
    return mix, {"response": [[round(float(v), 4) for v in line] for line in response], "signs": evidence}

def shape_directions(generator: torch.nn.Module, synthesizer: torch.nn.Module | None, w: torch.Tensor,
                     config: SignTrainConfig) -> ShapeDirections:
    """The shape-carrying directions in W, from S's masks of G(w) (none without S)."""
    if synthesizer is None:
        return ShapeDirections((), torch.zeros(0, w.shape[1]), {})
    masks = class_masks(generator, synthesizer, w, config.batch_size)
    return fit_shape_directions(w, shape_attributes(masks), shape_names(), config.shape_min_r2, seed=config.seed)


def edit_of(directions: dict[str, torch.Tensor], steps: dict[str, tuple[float, ...]], names: tuple[str, ...], sign: str,
            candidate: EditCandidate, num_ws: int) -> torch.Tensor:
    """One sign's full-strength edit [num_ws, w_dim] as `candidate` makes it (directions and steps by conditioning)."""
    row = names.index(sign)
    rows, lengths = directions[candidate.conditioning], steps[candidate.conditioning]
    return layer_mask(candidate.layers, num_ws)[:, None] * (candidate.scale * lengths[row] * rows[row])


def conditioning_record(normals: torch.Tensor, directions: torch.Tensor, row: int, shapes: torch.Tensor) -> dict[str, float]:
    """How far conditioning moved a sign's direction: its cosine with its own normal, the largest with
    another sign's normal, and the largest with a shape-carrying direction before and after."""
    others = [other for other in range(len(normals)) if other != row]
    shape_before = float((shapes @ normals[row]).abs().max()) if len(shapes) else 0.0
    shape_after = float((shapes @ directions[row]).abs().max()) if len(shapes) else 0.0
    return {"cosine_before_orthogonalising": float(normals[row] @ directions[row]),
            "largest_cosine_other_normal": float((normals[others] @ directions[row]).abs().max()) if others else 0.0,
            "largest_shape_cosine_before": shape_before, "largest_shape_cosine_after": shape_after}


def direction_auc(generator: torch.nn.Module, embedder: torch.nn.Module, probe: LinearProbe, w: torch.Tensor,
                  direction: torch.Tensor, config: SignTrainConfig) -> float:
    """How well the conditioned direction still separates the sign on fresh w: the AUC of w's projection
    on it against the probe's labels of G(w) (split as `boundary_normal` splits)."""
    scores = probe_scores(generator, embedder, w, {"sign": probe}, config.batch_size)["sign"]
    positive = scores > 0
    if min(int(positive.sum()), int((~positive).sum())) < MIN_CLASS:
        positive = scores > scores.median()
    return auc((w @ direction).numpy(), positive.numpy())


def stack_probes(probes: list[LinearProbe]) -> dict[str, torch.Tensor]:
    """The probes' parameters as the rows of `PROBE_KEYS`' tensors (stored in signs.safetensors)."""
    return {key: torch.stack([getattr(probe, key.removeprefix("probe_")) for probe in probes]) for key in PROBE_KEYS}


@torch.no_grad()
def sample_w(generator: torch.nn.Module, count: int, seed: int) -> torch.Tensor:
    """[count, w_dim] w = mapping(z), z from its own seeded stream (truncation 1: G's own distribution)."""
    z = torch.randn(count, generator.config.z_dim, generator=torch.Generator().manual_seed(seed))
    return generator.mapping(z)


@torch.no_grad()
def probe_scores(generator: torch.nn.Module, embedder: torch.nn.Module, w: torch.Tensor, probes: dict[str, LinearProbe],
                 batch_size: int) -> dict[str, torch.Tensor]:
    """Each probe's logit [N] on C's descriptors of G(w) (constant noise, as the pipeline draws)."""
    descriptors = torch.cat([embedder.describe(synthesize(generator, w[i:i + batch_size]))
                             for i in range(0, len(w), batch_size)])
    return {sign: probe.logits(descriptors) for sign, probe in probes.items()}


@torch.no_grad()
def synthesize(generator: torch.nn.Module, w: torch.Tensor) -> torch.Tensor:
    """G's pictures [N, 3, R, R] of w [N, w_dim] or per style input [N, num_ws, w_dim], constant noise."""
    return generator.synthesis(w, noise_mode="const")


def edited(w: torch.Tensor, edit: torch.Tensor) -> torch.Tensor:
    """w [N, w_dim] with an edit per style input [num_ws, w_dim] added: [N, num_ws, w_dim]."""
    return w[:, None] + edit


class SignProbes:
    """What an edit does to G's pictures of a set of w, read by the sign probes (on C) and by S's masks."""

    def __init__(self, generator: torch.nn.Module, embedder: torch.nn.Module, probes: dict[str, LinearProbe],
                 synthesizer: torch.nn.Module | None, batch_size: int) -> None:
        self.generator, self.embedder, self.probes = generator, embedder, probes
        self.synthesizer, self.batch_size = synthesizer, batch_size
        self._plain: dict[int, tuple[dict[str, torch.Tensor], np.ndarray | None]] = {}

    def read(self, w: torch.Tensor) -> tuple[dict[str, torch.Tensor], np.ndarray | None]:
        """Each probe's logits [N] and S's class masks [N, classes, R, R] (None without S) of G(w)."""
        scores = probe_scores(self.generator, self.embedder, w, self.probes, self.batch_size)
        if self.synthesizer is None:
            return scores, None
        return scores, class_masks(self.generator, self.synthesizer, w, self.batch_size)

    def plain(self, w: torch.Tensor) -> tuple[dict[str, torch.Tensor], np.ndarray | None]:
        """`read` of the unedited w, once per set."""
        if id(w) not in self._plain:
            self._plain[id(w)] = self.read(w)
        return self._plain[id(w)]

    def measure(self, w: torch.Tensor, sign: str, edit: torch.Tensor, every: bool = False) -> dict[str, Any]:
        """The edited sign's mean score rise, the largest mean move of another sign, and (with S) the
        smallest mean DICE over the region classes the sign must leave in place, at the edit and at its
        negation (a picture draws both: present and absent); `every`: also each classifier's mean move
        ("moves")."""
        (before, plain_masks), (after, masks) = self.plain(w), self.read(edited(w, edit))
        moves = {name: float((after[name] - before[name]).mean()) for name in self.probes}
        result: dict[str, Any] = {"rise": moves[sign],
                                  "largest_other_move": max((abs(v) for name, v in moves.items() if name != sign), default=0.0)}
        if every:
            result["moves"] = moves
        if masks is not None and plain_masks is not None:
            absent = class_masks(self.generator, self.synthesizer, edited(w, -edit), self.batch_size)
            result["other_dice"] = min(*other_dice(masks, plain_masks, sign).values(),
                                       *other_dice(absent, plain_masks, sign).values())
        return result


def class_masks(generator: torch.nn.Module, synthesizer: torch.nn.Module, w: torch.Tensor, batch_size: int) -> np.ndarray:
    """S's region-class masks [N, classes, R, R] of G(w)."""
    return np.concatenate([region_masks(synthesizer, synthesize(generator, w[i:i + batch_size]))
                           for i in range(0, len(w), batch_size)])


def boundary_normal(w: torch.Tensor, scores: torch.Tensor, config: SignTrainConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """The unit normal [w_dim] of a linear boundary in W between G's samples with and without the sign.

    A sample has the sign when its probe says so; when G draws a sign too rarely (or too often) for
    that to leave both sides `MIN_CLASS` samples, the split is at the median score instead ("more of
    the sign than half of G's samples"), which the record says."""
    positive = scores > 0
    share = float(positive.float().mean())
    split = "probe"
    if min(int(positive.sum()), int((~positive).sum())) < MIN_CLASS:
        positive, split = scores > scores.median(), "median"
    boundary = LinearProbe.fit(w, positive, config.probe_weight_decay, config.probe_iterations)
    normal = boundary.weight / boundary.scale  # the logit's gradient in W's own coordinates
    return normal / normal.norm().clamp_min(1e-12), {"share_of_g_samples": share, "w_labels": split}


def orthonormalise(directions: torch.Tensor) -> torch.Tensor:
    """The orthonormal rows [S, D] closest to `directions` (Löwdin: U V^T of their SVD), order-free."""
    u, _, vt = torch.linalg.svd(directions.double(), full_matrices=False)
    return (u @ vt).float()


@torch.no_grad()
def edit_quality(generator: torch.nn.Module, embedder: torch.nn.Module, probes: dict[str, LinearProbe], w: torch.Tensor,
                 sign: str, step: torch.Tensor, config: SignTrainConfig) -> dict[str, Any]:
    """How the probes read G(w + s * step) for s in 0 .. 1: the edited sign's mean score should rise
    monotonically (Spearman of mean score against strength), the other signs' should move less."""
    strengths = np.linspace(0.0, 1.0, config.check_strengths)
    means = {name: [] for name in probes}
    for strength in strengths:
        scores = probe_scores(generator, embedder, edited(w, float(strength) * step), probes, config.batch_size)
        for name, values in scores.items():
            means[name].append(float(values.mean()))
    rise = means[sign][-1] - means[sign][0]
    others = {name: abs(values[-1] - values[0]) for name, values in means.items() if name != sign}
    return {"w_spearman": spearman(strengths, np.array(means[sign])), "w_score_rise": rise,
            "w_score_by_strength": [round(value, 4) for value in means[sign]],
            "w_largest_other_shift": max(others.values(), default=0.0)}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (no ties expected in a mean score along a strength ramp)."""
    rank_x, rank_y = x.argsort().argsort().astype(float), y.argsort().argsort().astype(float)
    if rank_y.std() == 0:
        return 0.0
    return float(np.corrcoef(rank_x, rank_y)[0, 1])
