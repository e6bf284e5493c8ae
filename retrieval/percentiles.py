"""A hit's scores in plain words: each as a percentile of its build's reference distribution
(indexing/reference.py), and one short sentence built from them.

The percentile of a score is the share of random archive pairs that scored lower ("closer than
97 % of archive cases"). The fused one is read for the weights the search ranked by, from every
pair's three channel scores, so a refined search (other weights) is placed as exactly as a plain
one. A build without a reference distribution gives no percentiles, and says so.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from indexing.archive import Archive
from indexing.fused_index import ChannelWeights
from indexing.models import IndexBuild
from indexing.reference import load_reference
from indexing.vectors import APPEARANCE, CHANNELS, LATENT, SHAPE
from retrieval.engine import ChannelScores

NO_REFERENCE = "this index build has no reference distribution (it was built before percentiles): raw scores only"
CLOSE, FAR = 90.0, 10.0  # percentiles from which a channel reads as close or as unlike
WORDS = {SHAPE: "outline", APPEARANCE: "colour and texture", LATENT: "overall look"}


@dataclass(frozen=True)
class Percentiles:
    fused: float
    appearance: float
    latent: float
    shape: float

    def of(self, channel: str) -> float:
        return float(getattr(self, channel))


class Reference:
    """One build's reference pair scores, ready to place a hit's scores."""

    def __init__(self, scores: np.ndarray, scales: dict[str, float]) -> None:
        self.scales = scales
        self.raw = scores.astype(np.float64)
        self.sorted = {name: np.sort(self.raw[:, column]) for column, name in enumerate(CHANNELS)}
        self._fused: dict[ChannelWeights, np.ndarray] = {}
        self._lock = threading.Lock()

    def fused(self, weights: ChannelWeights) -> np.ndarray:
        """The pairs' fused scores under `weights`, sorted (a few kept, one per weighting seen)."""
        with self._lock:
            if weights not in self._fused:
                factors = np.array([weights.of(name) * self.scales[name] for name in CHANNELS])
                self._fused = {**dict(list(self._fused.items())[-7:]), weights: np.sort(self.raw @ factors)}
            return self._fused[weights]

    def place(self, score: float, channels: ChannelScores, weights: ChannelWeights) -> Percentiles:
        return Percentiles(fused=_percentile(self.fused(weights), score),
                           **{name: _percentile(self.sorted[name], getattr(channels, name)) for name in CHANNELS})


def _percentile(sorted_scores: np.ndarray, score: float) -> float:
    """The share (%) of reference scores below `score`, ties counted half."""
    below = np.searchsorted(sorted_scores, score, side="left")
    above = np.searchsorted(sorted_scores, score, side="right")
    return float(100.0 * (below + above) / (2 * len(sorted_scores)))


def _share(percentile: float) -> str:
    """97 -> "97", 99.24 -> "99.2", above every pair -> "99.9" (a sample of pairs proves no 100 %)."""
    return f"{min(percentile, 99.9):.1f}" if percentile >= 99.0 else f"{percentile:.0f}"


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def plain_sentence(placed: Percentiles) -> str:
    """"closer in outline than 97 % of archive cases; colour and texture typical", channels closest first;
    several close channels in one clause: "closer in outline (98 %) and overall look (95 %) than archive cases"."""
    order = sorted(WORDS, key=lambda name: -placed.of(name))  # ties: outline first
    near = [name for name in order if placed.of(name) >= CLOSE]
    typical = [WORDS[name] for name in order if FAR < placed.of(name) < CLOSE]
    unlike = [WORDS[name] for name in order if placed.of(name) <= FAR]
    if len(near) == 1:
        close = [f"closer in {WORDS[near[0]]} than {_share(placed.of(near[0]))} % of archive cases"]
    else:
        close = [f"closer in {_listed([f'{WORDS[name]} ({_share(placed.of(name))} %)' for name in near])} than archive cases"] if near else []
    parts = close + ([f"{_listed(typical)} typical"] if typical else [])
    parts += [f"{_listed(unlike)} unlike most archive cases"] if unlike else []
    return "; ".join(parts)


class References:
    """Each build's Reference, read from the DB once (None for a build without one); thread-safe."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._kept: dict[int, Reference | None] = {}
        self._lock = threading.Lock()

    def of(self, build_id: int) -> Reference | None:
        with self._lock:
            if build_id in self._kept:
                return self._kept[build_id]
        with self.archive.sessions() as session:
            scores = load_reference(session, build_id)
            row = session.get(IndexBuild, build_id)
            scales = {name: float(value) for name, value in (row.config or {}).get("scales", {}).items()} if row else {}
        reference = Reference(scores.scores, scales) if scores is not None and scales else None
        with self._lock:
            self._kept[build_id] = reference
        return reference
