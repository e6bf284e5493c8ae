"""Clinical signs as directions: what a query of "sketch + signs" adds to the sketch (issue 38).

A contour cannot show white exudate or erythema, yet they decide most diagnoses. Each sign the
archive labels carries two learned unit directions, stored in the bundle (`signs.safetensors` and
the `signs` entry of `bundle.json`): one in G's W, added to E's w before G and H draw (the
picture), and one in C's descriptor space, added to the query's appearance vector (the ranking).
A strength s moves by s times the sign's step; strengths run from 0 to 1, or further where the
strength validation chose for a sign is larger (`chosen`, written by `s2m eval retrieval --signs
--record-strengths`), and a sign asked as "present" (no number) takes that chosen strength (1 when
none was chosen). A negative strength says the sign is absent and moves the other way: "absent"
takes the absent strength validation chose (1 when none was), down to -1 or that strength. A
clinician who remembers "red, no white spots" can say so, and a query's picture, whose findings E
guesses from an outline, no longer answers for the signs the clinician ruled out. The W edit stops
growing at strength 1 either way, where its editing quality was measured to hold, and only the
appearance edit goes further. Where validation chose so, a sign query's latent vector drops its parts
along the signs' W directions (`outline_latent`): E guesses findings from an outline, and the stated signs
should not have to outvote that guess in the latent channel. A sign's W edit reaches only the style inputs of G chosen for it on validation w
(`layers`, all when the entry has none), mixed with shares of the other signs' own edits where G
draws signs together (`mix`, chosen on validation w: `generation.sign_training.choose_mix`), and the sign classifiers the directions were learned with
are stored beside them, so their editing quality can be measured later. The directions are not
networks: they
stay out of `Bundle.version` (index builds are keyed by it), and they record the digests of the G
and C they were learned with, so a retrained G or C makes them refuse until `s2m train signs` runs.
`generation.sign_training` learns them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from formats.errors import InputError
from generation.bundle import EMBEDDER, GENERATOR, Bundle, BundleError, replace_bundle_info
from generation.files import atomic_target

SIGNS_ENTRY = "signs"  # the top-level key of bundle.json (never under "networks": no effect on the version)
SIGNS_FILE = "signs.safetensors"
SIGNS_FORMAT = 1  # the stored layout's version
MAX_STRENGTH = 1.0  # the picture's range of a present sign is 0 to this (absent: the same, negated)
ABSENT = "absent"  # a sign asked absent without a number: minus the absent strength chosen on validation (1 when none was)
PRESENT = "present"  # a sign asked without a number: the strength chosen on validation (1 when none was)
CHOSEN = "chosen"  # the key of the entry's strengths, route and weight chosen on validation
LAYERS = "layers"  # the entry's {sign: [style input indices]} chosen on validation w
PROBE_KEYS = ("probe_mean", "probe_scale", "probe_weight", "probe_bias")  # the sign classifiers in signs.safetensors
MIX_KEY = "mix"  # signs.safetensors' [S, S] shares of the signs' own W edits in each sign's edit (absent: none mixed)
ROUTES = ("w", "appearance")  # where a sign query's edit goes: W (picture, latent and what C sees) and C's space


class SignError(InputError):
    """A sign query the bundle cannot answer: an unknown sign, a strength out of range, no directions."""


@dataclass(frozen=True)
class AppliedSign:
    """How one sign changed a query: its strength and the length of each edit (W units, appearance units)."""

    sign: str
    strength: float
    w_shift: float  # |strength * step| along the unit W direction (0 when the W route is off)
    appearance_shift: float  # the same along the unit appearance direction, before re-normalising
    routes: tuple[str, ...] = ()  # the edits applied (of ROUTES)

    def as_record(self) -> dict[str, Any]:
        """What a response says and the query log keeps of it (names and numbers only)."""
        return {"sign": self.sign, "strength": self.strength, "routes": list(self.routes),
                "w_shift": round(self.w_shift, 4), "appearance_shift": round(self.appearance_shift, 4)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "AppliedSign":
        """A logged sign back (a reopened or refined query's)."""
        return cls(str(record["sign"]), float(record["strength"]), float(record.get("w_shift", 0.0)),
                   float(record.get("appearance_shift", 0.0)), tuple(record.get("routes", ())))


@dataclass(frozen=True, eq=False)
class SignDirections:
    """Per sign a unit direction in W ([S, w_dim], mutually orthogonal) and in C's space ([S, D]), with steps."""

    names: tuple[str, ...]
    w: torch.Tensor  # [S, w_dim]
    appearance: torch.Tensor  # [S, D]
    w_steps: tuple[float, ...]  # the W distance that strength 1 moves
    appearance_steps: tuple[float, ...]  # the appearance distance that strength 1 adds
    appearance_weight: float  # the appearance channel's weight for sign queries (the default weighs it 0)
    routes: tuple[str, ...]  # which edits a sign query applies (of ROUTES)
    record: dict[str, Any]  # the bundle.json entry: fingerprint, quality, layers, ...
    current: bool = True  # learned with the bundle's present G and C
    probe_tensors: Mapping[str, torch.Tensor] | None = None  # the sign classifiers on C's descriptors ([S, D] / [S])
    mix: torch.Tensor | None = None  # [S, S]: row i, sign i's W edit as shares of every sign's own edit (None: its own)

    @property
    def defaults(self) -> dict[str, float]:
        """The strength "present" means for each sign: the one chosen on validation, else 1."""
        chosen = self.record.get(CHOSEN, {}).get("strengths", {})
        return {sign: float(chosen.get(sign, MAX_STRENGTH)) for sign in self.names}

    @property
    def absent_defaults(self) -> dict[str, float]:
        """The strength "absent" means for each sign, as a negative number: minus the one chosen on
        validation, else -1."""
        chosen = self.record.get(CHOSEN, {}).get("absent_strengths", {})
        return {sign: -float(chosen.get(sign, MAX_STRENGTH)) for sign in self.names}

    @property
    def latent_weight(self) -> float | None:
        """The latent channel's weight for sign queries, chosen on validation (None: the build's). E's w
        carries the findings E guessed from the outline, which a query's signs may contradict."""
        chosen = self.record.get(CHOSEN, {}).get("latent_weight")
        return None if chosen is None else float(chosen)

    @property
    def latent_outline_only(self) -> bool:
        """Whether a sign query's latent vector drops its parts along the signs' W directions (chosen on
        validation): the signs then speak through their own edits alone, and the latent channel keeps what
        E's w says of the outline without the findings E guessed from it."""
        return bool(self.record.get(CHOSEN, {}).get("latent_outline_only", False))

    def outline_latent(self, latent: np.ndarray) -> np.ndarray:
        """Latent vectors [..., w_dim] (unit length) with their components along the signs' W directions
        removed, re-normalised; the archive side needs no change (a dot product with the projected query
        ignores the archive vector's own parts along those directions)."""
        kept = latent - (latent @ self._sign_basis) @ self._sign_basis.T
        return kept / np.maximum(np.linalg.norm(kept, axis=-1, keepdims=True), 1e-12)

    @functools.cached_property
    def _sign_basis(self) -> np.ndarray:
        """An orthonormal basis [w_dim, S] of the signs' W directions (stored rows may be float16-rounded)."""
        return np.linalg.qr(self.w.double().numpy().T)[0].astype(np.float32)

    @property
    def max_strength(self) -> float:
        """The largest strength a query may ask: 1, or the largest chosen on validation when that is more."""
        return max(MAX_STRENGTH, *self.defaults.values())

    @property
    def min_strength(self) -> float:
        """The most negative strength (a sign absent) a query may ask: -1, or the chosen absent one when larger."""
        return min(-MAX_STRENGTH, *self.absent_defaults.values())

    def strengths(self, asked: Mapping[str, float | str]) -> dict[str, float]:
        """The asked strengths checked: known signs, finite values in [`min_strength`, `max_strength`],
        "present" or "absent" (the sign's defaults), one sentence naming the known signs otherwise."""
        if not self.current:
            raise SignError("this bundle's sign directions were learned with another generator or C; "
                            "run `s2m train signs` again")
        return check_strengths(asked, self.names, self.max_strength, self.defaults, self.min_strength, self.absent_defaults)

    def with_chosen(self, routes: tuple[str, ...], strengths: Mapping[str, float], appearance_weight: float,
                    evidence: dict[str, Any], absent: Mapping[str, float] | None = None,
                    latent_weight: float | None = None, latent_outline_only: bool = False) -> "SignDirections":
        """These directions with what validation chose (route, per-sign strengths present and, as positive
        magnitudes, absent, appearance and latent weights, whether the latent drops the signs' directions) as
        their defaults; `evidence` says on what."""
        if set(strengths) != set(self.names) or (absent is not None and set(absent) != set(self.names)) \
                or not set(routes) <= set(ROUTES) or not routes:
            raise ValueError(f"a choice names every sign ({', '.join(self.names)}) and routes of {ROUTES}")
        chosen = {**evidence, "routes": list(routes), "appearance_weight": float(appearance_weight),
                  "strengths": {sign: float(strengths[sign]) for sign in self.names}}
        if absent is not None:
            chosen["absent_strengths"] = {sign: float(absent[sign]) for sign in self.names}
        if latent_weight is not None:
            chosen["latent_weight"] = float(latent_weight)
        if latent_outline_only:
            chosen["latent_outline_only"] = True
        return dataclasses.replace(self, routes=tuple(routes), appearance_weight=float(appearance_weight),
                                   record={**self.record, CHOSEN: chosen})

    @property
    def layers(self) -> dict[str, tuple[int, ...] | None]:
        """The style inputs of G each sign's W edit reaches, chosen on validation w (None: all of them)."""
        chosen = self.record.get(LAYERS, {})
        return {sign: tuple(chosen[sign]) if sign in chosen else None for sign in self.names}

    def style_offset(self, strengths: Mapping[str, float], num_ws: int,
                     routes: tuple[str, ...] | None = None) -> torch.Tensor:
        """The W edit per style input of G [num_ws, w_dim] of checked strengths (zero when the W route is off):
        each sign's step along its direction on its own layers, mixed with the other signs' own edits where
        `mix` says so (G draws some signs together: "more exudate" alone also reddens, so its edit carries a
        share of "less erythema", measured on validation w). It stops growing at strength 1 either way: beyond
        it G's pictures lose the anatomy the sketch fixed (docs/sign_edits.md), while the appearance edit,
        which only ranks, may go to the larger strengths validation chose for it."""
        from generation.sign_conditions import layer_mask

        offset = torch.zeros(num_ws, self.w.shape[1])
        if "w" not in (self.routes if routes is None else routes):
            return offset
        for sign, strength in strengths.items():
            row = self.names.index(sign)
            shares = self.mix[row].tolist() if self.mix is not None else [float(column == row) for column in range(len(self.names))]
            amount = max(-MAX_STRENGTH, min(strength, MAX_STRENGTH))
            for column, share in enumerate(shares):
                if share:
                    offset += (amount * share * self.w_steps[column]) * layer_mask(self.layers[self.names[column]], num_ws)[:, None] \
                        * self.w[column]
        return offset

    def probes(self) -> dict[str, Any]:
        """The sign classifiers (`LinearProbe` on C's descriptors) the directions were learned with; {} when
        the bundle does not keep them (directions trained before they were stored)."""
        from generation.stylegan2.monitor import LinearProbe

        if not self.probe_tensors:
            return {}
        t = self.probe_tensors
        return {sign: LinearProbe(t["probe_mean"][row], t["probe_scale"][row], t["probe_weight"][row], t["probe_bias"][row])
                for row, sign in enumerate(self.names)}

    def edit_appearance(self, vector: np.ndarray, strengths: Mapping[str, float],
                        routes: tuple[str, ...] | None = None) -> np.ndarray:
        """A query's appearance vector [D] moved along the signs' directions and re-normalised to unit length."""
        if "appearance" not in (self.routes if routes is None else routes) or not strengths:
            return vector
        moved = vector.astype(np.float32).copy()
        for sign, strength in strengths.items():
            row = self.names.index(sign)
            moved += strength * self.appearance_steps[row] * self.appearance[row].numpy()
        return moved / max(float(np.linalg.norm(moved)), 1e-12)

    def applied(self, strengths: Mapping[str, float], routes: tuple[str, ...] | None = None) -> tuple[AppliedSign, ...]:
        """What `style_offset` and `edit_appearance` did, sign by sign, for a response."""
        routes = self.routes if routes is None else routes
        return tuple(AppliedSign(sign, strength, max(-MAX_STRENGTH, min(strength, MAX_STRENGTH)) * self.w_steps[self.names.index(sign)]
                                 * ("w" in routes),
                                 strength * self.appearance_steps[self.names.index(sign)] * ("appearance" in routes),
                                 tuple(route for route in ROUTES if route in routes))
                     for sign, strength in strengths.items())

    # -- storage --------------------------------------------------------------------------------
    def save(self, bundle_dir: Path) -> None:
        """Write `signs.safetensors` and the `signs` entry of `bundle.json` whole (the networks untouched)."""
        path = Path(bundle_dir) / SIGNS_FILE
        with atomic_target(path) as tmp:
            save_file({"w": self.w.contiguous(), "appearance": self.appearance.contiguous(),
                       **({} if self.mix is None else {MIX_KEY: self.mix.contiguous()}),
                       **{key: value.contiguous() for key, value in (self.probe_tensors or {}).items()}}, tmp,
                      metadata={"signs": json.dumps(self.names)})
        entry = {**self.record, "format": SIGNS_FORMAT, "file": SIGNS_FILE, "names": list(self.names),
                 "w_steps": list(self.w_steps), "appearance_steps": list(self.appearance_steps),
                 "appearance_weight": self.appearance_weight, "routes": list(self.routes)}
        replace_bundle_info(bundle_dir, **{SIGNS_ENTRY: entry})

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> "SignDirections | None":
        """The bundle's sign directions, or None when it has none; BundleError when they are damaged."""
        entry = bundle.info.get(SIGNS_ENTRY)
        if entry is None:
            return None
        try:
            names = tuple(entry["names"])
            tensors = load_file(str(bundle.root / entry["file"]), device="cpu")
            w, appearance = tensors["w"].float(), tensors["appearance"].float()
            steps = tuple(map(float, entry["w_steps"])), tuple(map(float, entry["appearance_steps"]))
        except (KeyError, TypeError, OSError, SafetensorError):
            raise BundleError(f"the sign directions of bundle {bundle.root} are missing or damaged; "
                              f"run `s2m train signs` again") from None
        if not (len(names) == len(w) == len(appearance) == len(steps[0]) == len(steps[1])):
            raise BundleError(f"the sign directions of bundle {bundle.root} do not match their bundle.json entry")
        learned_with = entry.get("learned_with", {})
        current = all(bundle.has(name) and learned_with.get(name) == bundle.digest(name) for name in (GENERATOR, EMBEDDER))
        probes = {key: tensors[key].float() for key in PROBE_KEYS if key in tensors}
        mix = tensors[MIX_KEY].float() if MIX_KEY in tensors else None
        if mix is not None and tuple(mix.shape) != (len(names), len(names)):
            raise BundleError(f"the sign directions of bundle {bundle.root} do not match their bundle.json entry")
        return cls(names, w, appearance, *steps, float(entry.get("appearance_weight", 0.0)),
                   tuple(entry.get("routes", ROUTES)), entry, current, probes if len(probes) == len(PROBE_KEYS) else None, mix)


def check_strengths(asked: Mapping[str, float | str], known: tuple[str, ...], largest: float = MAX_STRENGTH,
                    defaults: Mapping[str, float] | None = None, smallest: float = -MAX_STRENGTH,
                    absent: Mapping[str, float] | None = None) -> dict[str, float]:
    """`asked` as {sign: strength} when every sign is known and every strength a number in [`smallest`,
    `largest`] (below 0: the sign absent), "present" (the sign's entry of `defaults`, 1 when it has none)
    or "absent" (its entry of `absent`, -1 when it has none)."""
    unknown = sorted(set(asked) - set(known))
    if unknown:
        raise SignError(f"unknown sign {unknown[0]!r}; known signs: {', '.join(known)}")
    checked = {}
    for sign, strength in asked.items():
        if strength == PRESENT:
            strength = (defaults or {}).get(sign, MAX_STRENGTH)
        elif strength == ABSENT:
            strength = (absent or {}).get(sign, -MAX_STRENGTH)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not (
                smallest <= float(strength) <= largest):
            raise SignError(f"the strength of sign {sign!r} must be a number from {smallest:g} (absent) to "
                            f"{largest:g}, {PRESENT!r} or {ABSENT!r}; known signs: {', '.join(known)}")
        checked[sign] = float(strength)
    return checked


def require_signs(directions: SignDirections | None, asked: Mapping[str, float | str]) -> dict[str, float]:
    """Checked strengths of a query; a bundle without sign directions answers only a query without signs."""
    if not asked:
        return {}
    if directions is None:
        raise SignError("this bundle has no sign directions; build them with `s2m train signs`")
    return directions.strengths(asked)


def parse_sign_items(items: list[str]) -> dict[str, float | str]:
    """`NAME=STRENGTH` items (the CLI's `--sign exudate=1`) -> {sign: strength}; a bare NAME (or
    NAME=present) means "present": the strength chosen on validation. Checking names and ranges is
    `require_signs`'s (which lists the bundle's signs)."""
    parsed: dict[str, float | str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            value = value.strip()
            parsed[name.strip()] = PRESENT if not sep or value == PRESENT else ABSENT if value == ABSENT else float(value)
        except ValueError:
            raise SignError(f"a sign is NAME=STRENGTH with STRENGTH a number from {-MAX_STRENGTH:g} (absent) to "
                            f"{MAX_STRENGTH:g}, present or absent, e.g. exudate=0.5 or exudate=absent") from None
    return parsed
