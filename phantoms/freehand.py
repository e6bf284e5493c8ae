"""Free-hand sketch simulator: what people drawing the four outlines from a photo produce.

The paper tests on 495 sketches by 12 people who drew the uvula, pharyngeal wall, tonsils and
tongue by looking at a photo: misaligned, simplified, wobbly, with gaps, overshoots and the odd
missing object. This module turns an instance mask into such a sketch so that the project can
measure how a model trained on contour sketches copes with free-hand ones.

Every distortion is bounded by `DistortionBounds` (fractions of the image side, growing linearly
with the abstraction level 0..1), and a `DrawerStyle` only uses a share of each bound, so
`DistortionBounds.max_ink_distance` is a hard limit on how far any ink can be from the true outline.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from formats.categories import PHARYNGEAL_WALL, TONGUE, TONSIL, UVULA
from formats.contours import Outline, mask_outlines, scaled_width
from formats.masks import instance_ids
from formats.sketch import WHITE

SUBPIXEL_BITS = 4  # cv2 drawing with fractional coordinates
SUBPIXEL_SCALE = 1 << SUBPIXEL_BITS


def _lerp(span: tuple[float, float], abstraction: float) -> float:
    return span[0] + (span[1] - span[0]) * abstraction


@dataclass(frozen=True)
class DistortionBounds:
    """The largest distortion at abstraction 0 and at 1 (linear in between).

    Lengths are fractions of the image side, the rotation is in degrees, the scale is the largest
    |s - 1| per axis, stroke widths are px at 256 px.
    """

    shift: tuple[float, float] = (0.005, 0.08)  # whole sketch against the photo
    scale: tuple[float, float] = (0.01, 0.12)
    rotation_deg: tuple[float, float] = (0.5, 6.0)
    object_shift: tuple[float, float] = (0.003, 0.025)  # one object against the others
    simplification: tuple[float, float] = (0.002, 0.02)  # Douglas-Peucker tolerance
    smoothing: tuple[float, float] = (0.002, 0.012)  # Gaussian sigma along the stroke
    wobble: tuple[float, float] = (0.002, 0.012)  # along the normal
    overshoot: tuple[float, float] = (0.01, 0.05)  # a stroke running on past its end
    gap: tuple[float, float] = (0.005, 0.04)  # a stroke stopping short of its end
    double_offset: tuple[float, float] = (0.003, 0.015)  # a second pass beside the first
    smoothing_truncate: float = 2.0  # the smoothing kernel ends at this many sigmas
    stroke_width: tuple[float, float] = (1.0, 4.0)  # px at 256, thinnest and thickest
    antialias_px: float = 1.0  # anti-aliased ink reaches this far beyond the stroke width

    def max_shift(self, abstraction: float) -> float:
        return _lerp(self.shift, abstraction)

    def max_scale(self, abstraction: float) -> float:
        return _lerp(self.scale, abstraction)

    def max_rotation_deg(self, abstraction: float) -> float:
        return _lerp(self.rotation_deg, abstraction)

    def max_local_distance(self, abstraction: float) -> float:
        """How far (fraction of the side) one stroke strays from its outline before misalignment."""
        offshoot = _lerp(self.overshoot, abstraction) + _lerp(self.double_offset, abstraction)
        return (
            _lerp(self.simplification, abstraction)
            + self.smoothing_truncate * _lerp(self.smoothing, abstraction)
            + _lerp(self.wobble, abstraction)
            + offshoot
        )

    def max_ink_distance(self, abstraction: float, size: int) -> float:
        """Upper bound (px) on the distance of any ink pixel from the true outline of its object."""
        before = self.max_local_distance(abstraction) + _lerp(self.object_shift, abstraction)
        radius = math.sqrt(0.5) + before  # farthest a point gets from the image centre, in sides
        rotation = 2.0 * math.sin(math.radians(self.max_rotation_deg(abstraction)) / 2.0)
        misalignment = radius * (rotation + self.max_scale(abstraction)) + self.max_shift(abstraction)
        widest = max(1.0, scaled_width(self.stroke_width[1], size)) + 1.0  # + 1: rounding to whole px
        return (before + misalignment) * size + widest / 2.0 + self.antialias_px


@dataclass(frozen=True)
class DrawerStyle:
    """One person's way of drawing. Shares in [0, 1] say how much of each distortion bound is used."""

    name: str
    abstraction: tuple[float, float]  # range of this drawer's abstraction levels
    stroke_width: float  # px at 256, within DistortionBounds.stroke_width
    pressure: float  # relative width change along a stroke with pen pressure
    ink: int  # grey of the lightest (lowest pressure) ink; 0 = black pen
    misalignment: float
    wobble: float
    tremor: float  # share of the wobble at a short (shaky) wavelength
    wobble_wavelength: float  # fraction of the side between wobble extremes
    smoothing: float
    simplification: float
    pieces: int  # a closed outline is drawn in 1..pieces strokes
    gaps: float
    overshoot: float
    double_stroke: float  # probability that a stroke gets a second pass
    omission: float  # probability (before the category weight) of leaving an object out

    def __post_init__(self) -> None:
        shares = ("pressure", "misalignment", "wobble", "tremor", "smoothing", "simplification",
                  "gaps", "overshoot", "double_stroke", "omission")
        for name in shares:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"drawer style {self.name}: {name} must be in [0, 1]")
        low, high = self.abstraction
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"drawer style {self.name}: abstraction range must lie in [0, 1]")
        if self.pieces < 1 or not 0 <= self.ink < WHITE // 2:
            raise ValueError(f"drawer style {self.name}: pieces >= 1 and a dark ink are required")


@dataclass(frozen=True)
class FreehandConfig:
    """What the simulator does independently of the drawer."""

    bounds: DistortionBounds = DistortionBounds()
    draw_order: tuple[int, ...] = (TONGUE, TONSIL, UVULA, PHARYNGEAL_WALL)  # a shared border is drawn once, by the first
    omission_weight: tuple[tuple[int, float], ...] = ((TONGUE, 0.3), (TONSIL, 1.0), (UVULA, 0.5), (PHARYNGEAL_WALL, 1.5))
    sample_spacing: float = 0.008  # fraction of the side between points of a stroke
    min_outline_length: float = 0.06  # shorter boundary pieces are not drawn
    shared_border: float = 0.012  # a boundary this close to an object drawn before is shared
    min_double_fraction: float = 0.4  # a second pass covers at least this share of its stroke
    taper: float = 0.05  # fraction of the side over which the pen lands and lifts
    pressure_wavelength: float = 0.3  # fraction of the side between pressure extremes
    tremor_wavelength: float = 0.02  # fraction of the side between extremes of a shaky hand


FREEHAND = FreehandConfig()
DISTORTION_BOUNDS = FREEHAND.bounds

DRAWER_STYLES: tuple[DrawerStyle, ...] = (
    # columns: name, abstraction range, stroke width (px at 256), pressure, ink grey, then the shares
    # misalignment, wobble, tremor, wobble wavelength, smoothing, simplification, pieces, gaps,
    # overshoot, double stroke probability, omission probability (DrawerStyle fields, in order)
    DrawerStyle("careful_tracer",  (0.0, 0.3),  1.5,  0.2,   20,  0.3,  0.3,  0.1,  0.2,  0.3,  0.2,    1,  0.2,  0.2, 0.02,  0.0),
    DrawerStyle("quick_scribbler", (0.6, 1.0),  2.0,  0.4,   40,  0.8,  0.9,  0.3, 0.15,  0.5,  0.8,    3,  0.8,  0.9,  0.3,  0.1),
    DrawerStyle("heavy_marker",    (0.3, 0.7),  3.5,  0.1,    0,  0.5,  0.5,  0.1, 0.25,  0.6,  0.5,    1,  0.3,  0.5, 0.05, 0.05),
    DrawerStyle("light_pencil",    (0.2, 0.6),  1.0,  0.6,   90,  0.5,  0.5,  0.3,  0.2,  0.4,  0.4,    2,  0.7,  0.3,  0.1, 0.05),
    DrawerStyle("double_liner",    (0.3, 0.7),  1.5,  0.3,   30,  0.5,  0.6,  0.2,  0.2,  0.5,  0.5,    2,  0.4,  0.5,  0.6, 0.05),
    DrawerStyle("minimalist",      (0.5, 1.0),  2.0,  0.2,   10,  0.6,  0.4,  0.0,  0.3,  0.9,  1.0,    1,  0.5,  0.4,  0.0, 0.35),
    DrawerStyle("shaky_hand",      (0.3, 0.8),  1.5,  0.5,   40,  0.5,  1.0,  0.7,  0.1,  0.2,  0.3,    2,  0.5,  0.5,  0.1, 0.05),
    DrawerStyle("smooth_curver",   (0.2, 0.6),  2.0,  0.2,   10,  0.4,  0.2,  0.0,  0.3,  1.0,  0.6,    1,  0.2,  0.3, 0.05, 0.02),
    DrawerStyle("overshooter",     (0.4, 0.9),  2.0,  0.3,   20,  0.6,  0.6,  0.2,  0.2,  0.5,  0.5,    3,  0.1,  1.0, 0.15, 0.05),
    DrawerStyle("tilted_view",     (0.3, 0.8),  2.0,  0.3,   20,  1.0,  0.5,  0.1,  0.2,  0.5,  0.5,    2,  0.4,  0.4,  0.1, 0.05),
    DrawerStyle("gappy_dasher",    (0.3, 0.8),  1.5,  0.4,   50,  0.6,  0.5,  0.2,  0.2,  0.5,  0.5,    3,  1.0,  0.1, 0.05,  0.1),
    DrawerStyle("clinician",       (0.2, 0.7),  2.5,  0.3,   15,  0.5,  0.5,  0.2,  0.2,  0.5,  0.5,    2,  0.4,  0.4,  0.1,  0.1),
)


# Drawer styles no training or model choice may look at (augmentation settings, epochs, fusion
# weights): retrieval and refinement are reported on them separately, as styles nobody trained for.
UNSEEN_STYLES: tuple[str, ...] = ("heavy_marker", "shaky_hand", "tilted_view")
SEEN_STYLES: tuple[str, ...] = tuple(style.name for style in DRAWER_STYLES if style.name not in UNSEEN_STYLES)


def drawer_style(name: str) -> DrawerStyle:
    """The drawer style called `name`; a ValueError lists the choices otherwise."""
    for style in DRAWER_STYLES:
        if style.name == name:
            return style
    raise ValueError(f"unknown drawer style {name!r}; choose one of {[s.name for s in DRAWER_STYLES]}")


def sketch_seed(seed: int, image_id: str) -> int:
    """A per-image seed from a run seed and an image id, so that a folder's sketches are reproducible."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _smooth_noise(rng: np.random.Generator, count: int, wavelength: float) -> np.ndarray:
    """Smooth random values in [-1, 1] at `count` samples, extremes about `wavelength` samples apart."""
    wavelength = max(wavelength, 1.0)
    knots = rng.uniform(-1.0, 1.0, size=int(math.ceil(count / wavelength)) + 2)
    position = np.arange(count) / wavelength + rng.uniform()
    index = np.floor(position).astype(int)
    blend = (1.0 - np.cos(math.pi * (position - index))) / 2.0  # cosine easing stays between knots
    return knots[index] * (1.0 - blend) + knots[index + 1] * blend


def _resample(points: np.ndarray, closed: bool, spacing: float) -> np.ndarray:
    """Points [K, 2] -> points [M, 2] evenly `spacing` px apart along the polyline."""
    path = np.vstack([points, points[:1]]) if closed else points
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    count = max(2, int(math.ceil(arc[-1] / spacing)) + (0 if closed else 1))
    targets = np.linspace(0.0, arc[-1], count, endpoint=not closed)
    return np.stack([np.interp(targets, arc, path[:, 0]), np.interp(targets, arc, path[:, 1])], axis=1)


def _normals(points: np.ndarray) -> np.ndarray:
    """Unit normals [K, 2] of a polyline [K, 2] (zero where the tangent vanishes)."""
    tangent = np.gradient(points, axis=0) if len(points) > 1 else np.zeros_like(points)
    length = np.linalg.norm(tangent, axis=1, keepdims=True)
    unit = np.divide(tangent, length, out=np.zeros_like(tangent), where=length > 0)
    return np.stack([-unit[:, 1], unit[:, 0]], axis=1)


class FreehandDrawer:
    """Draws one sketch: one drawer style, one abstraction level, one random stream."""

    def __init__(self, style: DrawerStyle, abstraction: float, size: int, rng: np.random.Generator,
                 config: FreehandConfig = FREEHAND) -> None:
        self.style, self.abstraction, self.size, self.rng, self.config = style, abstraction, size, rng, config
        bounds = config.bounds
        self.spacing = config.sample_spacing * size

        def px(span: tuple[float, float], share: float) -> float:
            return _lerp(span, abstraction) * share * size

        self.simplify_px = px(bounds.simplification, style.simplification)
        self.smooth_px = px(bounds.smoothing, style.smoothing)
        self.wobble_px = px(bounds.wobble, style.wobble)
        self.overshoot_px = px(bounds.overshoot, style.overshoot)
        self.gap_px = px(bounds.gap, style.gaps)
        self.double_px = px(bounds.double_offset, 1.0)
        self.object_shift_px = px(bounds.object_shift, style.misalignment)
        self.affine = self._misalignment()  # [2, 3]

    def _disc(self, radius: float) -> np.ndarray:
        angle, fraction = self.rng.uniform(0.0, 2.0 * math.pi), math.sqrt(self.rng.uniform())
        return radius * fraction * np.array([math.cos(angle), math.sin(angle)])

    def _misalignment(self) -> np.ndarray:
        """The whole sketch's shift, per-axis scale and rotation about the image centre, as [2, 3]."""
        bounds, share, a = self.config.bounds, self.style.misalignment, self.abstraction
        angle = math.radians(self.rng.uniform(-1.0, 1.0) * bounds.max_rotation_deg(a) * share)
        scale = 1.0 + self.rng.uniform(-1.0, 1.0, size=2) * bounds.max_scale(a) * share
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        linear = rotation @ np.diag(scale)
        centre = np.full(2, (self.size - 1) / 2.0)
        shift = self._disc(bounds.max_shift(a) * share * self.size)
        return np.hstack([linear, (centre - linear @ centre + shift)[:, None]])

    def _shape(self, outline: Outline) -> np.ndarray:
        """Simplified, evenly resampled and smoothed outline points [M, 2]."""
        points = outline.points.astype(np.float32)
        if self.simplify_px > 0 and len(points) > 2:
            points = cv2.approxPolyDP(points[:, None, :], self.simplify_px, outline.closed)[:, 0, :]
        points = _resample(points.astype(np.float64), outline.closed, self.spacing)
        sigma = self.smooth_px / self.spacing
        if sigma > 0:
            mode = "wrap" if outline.closed else "nearest"
            points = gaussian_filter1d(points, sigma, axis=0, mode=mode, truncate=self.config.bounds.smoothing_truncate)
        return points

    def _span(self, points: np.ndarray, closed: bool, start: float, end: float) -> np.ndarray:
        """Points between sample positions start..end; past an open end the pen runs on straight."""
        count = len(points)
        positions = np.arange(math.ceil(start), math.floor(end) + 1)
        if closed:
            return points[positions % count]
        inside = points[np.clip(positions, 0, count - 1)]
        head = points[0] - points[min(1, count - 1)]
        tail = points[-1] - points[max(count - 2, 0)]
        before, after = np.minimum(positions, 0)[:, None], np.maximum(positions - (count - 1), 0)[:, None]
        return inside + before * -head + after * tail

    def _end_change(self) -> float:
        """Samples a stroke end runs on (> 0, overshoot) or stops short (< 0, gap)."""
        return self.rng.uniform(-self.gap_px, self.overshoot_px) / self.spacing

    def strokes(self, outline: Outline) -> list[np.ndarray]:
        """The pen strokes [K, 2] a drawer makes for one outline piece, before misalignment."""
        points = self._shape(outline)
        count = len(points)
        pieces = int(self.rng.integers(1, self.style.pieces + 1))
        if outline.closed:
            start = self.rng.uniform(0, count)
            cuts = start + np.sort(self.rng.uniform(0, count, size=pieces - 1))
            bounds = np.concatenate([[start], cuts, [start + count]])
        else:
            cuts = np.sort(self.rng.uniform(0, count - 1, size=pieces - 1))
            bounds = np.concatenate([[0.0], cuts, [count - 1.0]])
        strokes = []
        for begin, end in zip(bounds[:-1], bounds[1:]):
            begin, end = begin - self._end_change(), end + self._end_change()
            span = self._span(points, outline.closed, begin, end)
            if len(span) < 2:
                continue
            strokes.append(self._wobble(span))
            if self.rng.uniform() < self.style.double_stroke:
                strokes.append(self._second_pass(span))
        return strokes

    def _wobble(self, stroke: np.ndarray, offset: float = 0.0) -> np.ndarray:
        """Displace a stroke [K, 2] along its normal: slow wander plus tremor, |d - offset| <= wobble."""
        count, wavelength = len(stroke), self.style.wobble_wavelength * self.size / self.spacing
        slow = _smooth_noise(self.rng, count, wavelength)
        shake = _smooth_noise(self.rng, count, self.config.tremor_wavelength * self.size / self.spacing)
        tremor = self.style.tremor
        wander = self.wobble_px * ((1.0 - tremor) * slow + tremor * shake) + offset
        return stroke + _normals(stroke) * wander[:, None]

    def _second_pass(self, span: np.ndarray) -> np.ndarray:
        """Going over part of a stroke's path [K, 2] again, a little beside the first pass."""
        count = len(span)
        length = max(2, int(count * self.rng.uniform(self.config.min_double_fraction, 1.0)))
        begin = int(self.rng.integers(0, count - length + 1))
        return self._wobble(span[begin:begin + length], offset=self.rng.uniform(-1.0, 1.0) * self.double_px)

    def place(self, stroke: np.ndarray, object_shift: np.ndarray) -> np.ndarray:
        """A stroke [K, 2] moved by the object's shift and the whole sketch's misalignment."""
        shifted = stroke + object_shift
        return shifted @ self.affine[:, :2].T + self.affine[:, 2]

    def object_shift(self) -> np.ndarray:
        """How far [2] one object lands from where it belongs relative to the others."""
        return self._disc(self.object_shift_px)

    def draw(self, canvas: np.ndarray, stroke: np.ndarray) -> None:
        """Ink one stroke [K, 2] onto `canvas` [H, W] with pressure-dependent width and grey."""
        count = len(stroke)
        bounds, style = self.config.bounds, self.style
        pressure = _smooth_noise(self.rng, count, self.config.pressure_wavelength * self.size / self.spacing)
        taper_samples = max(1.0, self.config.taper * self.size / self.spacing)
        from_end = np.minimum(np.arange(count), np.arange(count)[::-1])
        landing = np.clip((from_end + 1) / taper_samples, 0.0, 1.0)  # pen lands and lifts lightly
        width = style.stroke_width * (1.0 + style.pressure * pressure) * landing
        width = np.clip(width, bounds.stroke_width[0], bounds.stroke_width[1])
        thickness = np.maximum(1, np.round(scaled_width(width, self.size))).astype(int)
        grey = np.round(style.ink * (1.0 - pressure) / 2.0).astype(int)
        fixed = np.round(stroke * SUBPIXEL_SCALE).astype(np.int64)
        layer = np.full_like(canvas, WHITE)
        for index in range(count - 1):
            cv2.line(layer, tuple(fixed[index]), tuple(fixed[index + 1]), int(grey[index]),
                     int(thickness[index]), cv2.LINE_AA, SUBPIXEL_BITS)
        np.minimum(canvas, layer, out=canvas)


def _check_inputs(instance_mask: np.ndarray, categories: dict[int, int], abstraction: float | None,
                  config: FreehandConfig) -> np.ndarray:
    instance_mask = np.asarray(instance_mask)
    if instance_mask.ndim != 2:
        raise ValueError(f"an instance mask is one [H, W] id map, got shape {instance_mask.shape}")
    ids = instance_ids(instance_mask)
    if len(ids) == 0:
        raise ValueError("the instance mask has no instances: a blank sketch is an error, not a sketch")
    missing = [int(i) for i in ids if int(i) not in categories]
    if missing:
        raise ValueError(f"instances {missing} have no category in `categories`")
    unknown = sorted({categories[int(i)] for i in ids} - set(config.draw_order))
    if unknown:
        raise ValueError(f"unknown category ids {unknown}; known: {list(config.draw_order)}")
    if abstraction is not None and not 0.0 <= abstraction <= 1.0:
        raise ValueError(f"abstraction must be in [0, 1], got {abstraction}")
    return ids


def freehand_sketch(instance_mask: np.ndarray, categories: dict[int, int], seed: int,
                    abstraction: float | None = None, style: DrawerStyle | None = None) -> np.ndarray:
    """Instance-id map [H, W] -> a simulated free-hand Sketch uint8 [H, W] (white 255, dark strokes).

    `categories` maps instance id -> category id; the drawer style is chosen from `seed` when not
    given, and the abstraction (0 close to the contour, 1 rough) is drawn from the style's range.
    """
    config = FREEHAND
    instance_mask = np.asarray(instance_mask)
    ids = _check_inputs(instance_mask, categories, abstraction, config)
    rng = np.random.default_rng(seed)
    if style is None:
        style = DRAWER_STYLES[int(rng.integers(len(DRAWER_STYLES)))]
    if abstraction is None:
        abstraction = float(rng.uniform(*style.abstraction))
    drawer = FreehandDrawer(style, abstraction, max(instance_mask.shape), rng, config)

    order = sorted(ids, key=lambda i: (config.draw_order.index(categories[int(i)]), int(i)))
    weights = dict(config.omission_weight)
    left_out = [rng.uniform() < style.omission * weights[categories[int(i)]] for i in order]
    sketch = _draw_objects(drawer, instance_mask, order, left_out)
    if (sketch == WHITE).all():  # everything drawn was left out or too small: nobody hands in a blank page
        sketch = _draw_objects(drawer, instance_mask, order, [False] * len(order))
    if (sketch == WHITE).all():
        raise ValueError("every object outline is too short to sketch at this size")
    return sketch


def _draw_objects(drawer: FreehandDrawer, instance_mask: np.ndarray, order: list[int],
                  left_out: list[bool]) -> np.ndarray:
    """Draw the objects in `order` (skipping those left out) onto a blank Sketch [H, W].

    A boundary shared with an object earlier in the order counts as drawn already.
    """
    config, size = drawer.config, drawer.size
    border = max(1, round(config.shared_border * size))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * border + 1, 2 * border + 1))
    drawn_before = np.zeros(instance_mask.shape, dtype=np.uint8)
    canvas = np.full(instance_mask.shape, WHITE, dtype=np.uint8)
    min_points = config.min_outline_length * size
    for instance_id, skip in zip(order, left_out):
        mask = instance_mask == instance_id
        if not skip:
            shift = drawer.object_shift()
            shared = cv2.dilate(drawn_before, kernel) > 0
            for outline in mask_outlines(mask, exclude=shared):
                if len(outline.points) < min_points:
                    continue
                for stroke in drawer.strokes(outline):
                    drawer.draw(canvas, drawer.place(stroke, shift))
        drawn_before |= mask.astype(np.uint8)
    return canvas
