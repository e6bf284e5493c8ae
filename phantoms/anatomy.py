"""Geometry of the open mouth: which structure each pixel sees, and how it bulges.

Every structure is an implicit region in *world* coordinates (x left to right, y top to bottom,
both in [-1, 1] for the unrotated frame); the camera's rotation, shift and zoom only change which
world point a pixel looks at, so masks stay exact under every camera pose. Regions are painted
back to front (wall, pillars, tonsils, uvula, tongue, lips), which is the physical occlusion.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from phantoms.noise import value_noise
from phantoms.params import CaseParams

# region codes of the label map; the order of the tuple is the painting order (back to front)
CHEEK, FOSSA, WALL, DEPTH, POSTERIOR_PILLAR, TONSIL_LEFT, TONSIL_RIGHT, ANTERIOR_PILLAR, UVULA, TONGUE, LIPS = range(11)
REGION_COUNT = 11
PAINT_ORDER = (CHEEK, FOSSA, WALL, DEPTH, POSTERIOR_PILLAR, TONSIL_LEFT, TONSIL_RIGHT, ANTERIOR_PILLAR, UVULA, TONGUE, LIPS)


@dataclass(frozen=True)
class AnatomyConfig:
    """Shape constants of the phantom mouth, in world units (the frame spans 2)."""

    arch_half_width: float = 0.9  # anterior pillars' half distance at the tongue, times mouth opening
    arch_exponent: float = 0.4  # how fast the palatal arch widens below its apex
    arch_top: float = 0.2  # the arch's width at its apex, as a share of its full width
    wall_edge: float = 0.58  # arch coordinate where the posterior pillars begin
    posterior_pillar_edge: float = 0.76  # ... where the tonsil fossa begins
    anterior_pillar_edge: float = 1.0  # ... where the anterior pillars begin
    cheek_edge: float = 1.4  # ... where the buccal mucosa begins
    fold_edge_share: float = 0.35  # share of a pillar's width that is its rounded free edge
    fold_flat: float = 0.35
    fossa_relief: float = 0.55
    wall_relief: float = 0.5  # relief at the free edge itself (it turns away from the camera)
    tonsil_lateral: float = 1.1  # lateral tonsil pole, hidden behind the anterior pillar
    tonsil_min_half_width: float = 1e-3
    tonsil_min_half_height: float = 0.15
    tonsil_max_half_height: float = 0.42
    tonsil_tongue_clearance: float = 0.1
    tonsil_edge_noise: float = 0.1
    uvula_root: float = 0.03  # how far up into the palate the uvula is labelled
    uvula_taper: float = 0.3
    uvula_bulb: tuple[float, float] = (0.95, 1.25)  # tip radii, in uvula half-widths
    uvula_deviation_scale: float = 0.16
    depth_half_width: float = 0.42
    depth_half_height: float = 0.7
    depth_falloff: float = 5.0  # how quickly the wall darkens towards the depth (per unit radius)
    tongue_dome_depth: float = 0.45
    tongue_edge_noise: float = 0.03
    groove_half_width: float = 0.06
    groove_fade: float = 3.0  # per world unit behind the tongue's edge
    palate_roll: float = 1.0  # relief lost per world unit above the arch apex
    edge_noise_cells: int = 5
    lips_radii: tuple[float, float] = (1.3, 1.22)  # ellipse of the mouth aperture in the frame
    min_instance_fraction: float = 0.0015  # smaller visible remnants are not labelled at all
    min_instance_pixels: int = 4


@dataclass(frozen=True)
class Anatomy:
    """Label map and relief of one rendered mouth."""

    region: np.ndarray  # uint8 [S, S], region codes above
    relief: np.ndarray  # float32 [S, S], 0 at a structure's rim .. 1 where it faces the camera
    groove: np.ndarray  # float32 [S, S], tongue median groove strength 0..1
    depth_shade: np.ndarray  # float32 [S, S], 1 at the front of the wall .. 0 deep in the throat
    visible_tonsils: tuple[bool, bool]


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in normalised frame coordinates, each float32 [S, S] in (-1, 1)."""
    axis = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    v, u = np.meshgrid(axis, axis, indexing="ij")
    u.flags.writeable = v.flags.writeable = False  # shared between calls through the cache
    return u, v


def world_grid(params: CaseParams, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (x, y) each pixel sees through the posed camera, and the frame (u, v)."""
    u, v = pixel_grid(size)
    angle = np.deg2rad(params.rotation_deg)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    x = (cos * u - sin * v) / params.zoom + params.shift[0]
    y = (sin * u + cos * v) / params.zoom + params.shift[1]
    return x, y, u, v


def _ellipse_radius(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)


def _dome(radius: np.ndarray) -> np.ndarray:
    """Relief of a rounded body from its normalised radius (1 at the rim)."""
    return np.sqrt(np.clip(1.0 - radius * radius, 0.0, 1.0))


@dataclass(frozen=True)
class _Body:
    """A rasterised structure: where it is and how it bulges towards the camera."""

    mask: np.ndarray  # bool [S, S]
    relief: np.ndarray  # float32 [S, S]


def _uvula(x: np.ndarray, y: np.ndarray, params: CaseParams, apex: float, config: AnatomyConfig) -> tuple[_Body, float]:
    """Tear-drop uvula hanging from the palatal apex: a tapering stalk ending in a round tip.

    Returns the body and the world y of its tip. The stalk bends towards the deviated side
    quadratically, so the root stays in the midline.
    """
    top = apex - config.uvula_root
    length = 2.0 * params.uvula_length + config.uvula_root
    half = params.uvula_width
    tip_offset = params.uvula_deviation * config.uvula_deviation_scale
    t = np.clip((y - top) / length, 0.0, 1.0)
    centre = tip_offset * t**2
    stalk_radius = np.where((y >= top) & (y <= top + length), np.abs(x - centre) / (half * (1.0 - config.uvula_taper * t)), np.inf)
    bulb_rx, bulb_ry = half * config.uvula_bulb[0], half * config.uvula_bulb[1]
    bulb_cy = top + length - bulb_ry
    bulb_cx = tip_offset * ((bulb_cy - top) / length) ** 2
    bulb_radius = _ellipse_radius(x, y, bulb_cx, bulb_cy, bulb_rx, bulb_ry)
    above_bulb = y < bulb_cy
    mask = ((stalk_radius < 1.0) & above_bulb) | (bulb_radius < 1.0)
    relief = np.maximum(np.where(above_bulb, _dome(stalk_radius), 0.0), _dome(bulb_radius))
    return _Body(mask, relief.astype(np.float32)), top + length


def _tonsil(
    x: np.ndarray, y: np.ndarray, side: float, extent: float, params: CaseParams, reference: float,
    level_y: float, tongue_top_here: float, edge_noise: np.ndarray, config: AnatomyConfig,
) -> _Body:
    """A palatine tonsil: an oval whose lateral pole hides behind the anterior pillar and whose
    medial edge reaches `extent` of the way from the pillars to the midline (Brodsky)."""
    lateral = reference * config.tonsil_lateral
    medial = reference * (1.0 - extent)
    half_w = max((lateral - medial) / 2.0, config.tonsil_min_half_width)
    half_h = float(np.clip(half_w * params.tonsil_aspect, config.tonsil_min_half_height, config.tonsil_max_half_height))
    cx = side * (lateral + medial) / 2.0
    cy = min(level_y, tongue_top_here - config.tonsil_tongue_clearance)
    radius = _ellipse_radius(x, y, cx, cy, half_w, half_h) + config.tonsil_edge_noise * edge_noise * side
    return _Body(radius < 1.0, _dome(radius).astype(np.float32))


def build_anatomy(params: CaseParams, size: int, rng: np.random.Generator, config: AnatomyConfig = AnatomyConfig()) -> Anatomy:
    """Rasterise the mouth of `params` at `size` px; `rng` draws the organic edge wobble."""
    x, y, u, v = world_grid(params, size)
    edge_noise = value_noise(rng, size, config.edge_noise_cells)  # [S, S]

    # the palatal arch: a curve from the apex under the palate down to the tongue; `arch` is a
    # pixel's distance from the midline in units of the arch's half-width at its height
    apex = -1.0 + 2.0 * params.palate_height
    arch_max = config.arch_half_width * params.mouth_opening

    def arch_half_width(at_y: np.ndarray | float) -> np.ndarray | float:
        t = np.clip((at_y - apex) / (1.0 - apex), 0.0, 1.0)
        return arch_max * (config.arch_top + (1.0 - config.arch_top) * t**config.arch_exponent)

    arch = np.where(y > apex, np.abs(x) / arch_half_width(y), np.inf).astype(np.float32)

    def tongue_top(at_x: np.ndarray | float) -> np.ndarray | float:
        return 1.0 - 2.0 * params.tongue_height + params.tongue_arc * at_x * at_x

    tongue_edge = tongue_top(x) + config.tongue_edge_noise * edge_noise
    tongue = _Body(y > tongue_edge, np.sqrt(np.clip((y - tongue_edge) / config.tongue_dome_depth, 0.0, 1.0)))
    uvula, uvula_tip = _uvula(x, y, params, apex, config)

    opening = arch < config.wall_edge
    depth_cy = uvula_tip + params.wall_depth + config.depth_half_height
    depth_radius = _ellipse_radius(x, y, 0.0, depth_cy, config.depth_half_width * params.mouth_opening, config.depth_half_height)
    depth_shade = np.clip((depth_radius - 1.0) * config.depth_falloff, 0.0, 1.0)

    level_y = apex + params.tonsil_level * (1.0 - apex)
    reference = float(arch_half_width(level_y))
    tonsils = [
        _tonsil(x, y, side, extent, params, reference, level_y, float(tongue_top(side * reference)), edge_noise, config)
        for side, extent in zip((-1.0, 1.0), params.tonsil_extent)
    ]
    anterior_pillar = (arch >= config.anterior_pillar_edge) & (arch < config.cheek_edge)
    lips = (u / config.lips_radii[0]) ** 2 + (v / config.lips_radii[1]) ** 2 > 1.0
    front_of_tonsils = anterior_pillar | uvula.mask | tongue.mask | lips
    # a grade-0 tonsil that barely peeks out of its fossa is not labelled; from grade 1 on it always is
    min_pixels = max(config.min_instance_pixels, int(config.min_instance_fraction * size * size)) if params.tonsil_grade == 0 else 1
    visible = tuple(
        (not hidden) and int((tonsil.mask & ~front_of_tonsils).sum()) >= min_pixels
        for tonsil, hidden in zip(tonsils, params.tonsil_hidden)
    )

    def fold_relief(inner: float, outer: float) -> np.ndarray:
        """A mucosal fold: rounded free edge on the inner side, flattening out towards the outside."""
        t = np.clip((arch - inner) / ((outer - inner) * config.fold_edge_share), 0.0, 1.0)
        return (config.fold_flat + (1.0 - config.fold_flat) * np.sin(np.pi / 2 * t)).astype(np.float32)

    nothing = np.zeros_like(opening)
    layers = {
        FOSSA: ((arch >= config.posterior_pillar_edge) & (arch < config.anterior_pillar_edge), np.full_like(x, config.fossa_relief)),
        WALL: (opening, np.full_like(x, config.wall_relief)),
        DEPTH: (opening & (depth_radius < 1.0), np.clip(depth_radius, 0.0, 1.0) ** 2),
        POSTERIOR_PILLAR: (
            (arch >= config.wall_edge) & (arch < config.posterior_pillar_edge),
            fold_relief(config.wall_edge, config.posterior_pillar_edge),
        ),
        TONSIL_LEFT: (tonsils[0].mask if visible[0] else nothing, tonsils[0].relief),
        TONSIL_RIGHT: (tonsils[1].mask if visible[1] else nothing, tonsils[1].relief),
        ANTERIOR_PILLAR: (anterior_pillar, fold_relief(config.anterior_pillar_edge, config.cheek_edge)),
        UVULA: (uvula.mask, uvula.relief),
        TONGUE: (tongue.mask, tongue.relief),
        LIPS: (lips, np.zeros_like(x)),
    }
    region = np.full((size, size), CHEEK, dtype=np.uint8)
    relief = np.clip(1.0 - config.palate_roll * np.maximum(apex - y, 0.0), 0.0, 1.0).astype(np.float32)
    for code in PAINT_ORDER[1:]:
        mask, layer_relief = layers[code]
        region[mask] = code
        relief[mask] = layer_relief[mask]

    # the median groove runs from the tip of the tongue backwards and fades towards the crest
    groove = np.exp(-((x / config.groove_half_width) ** 2)) * np.clip((y - tongue_edge) * config.groove_fade, 0.0, 1.0)
    return Anatomy(
        region=region,
        relief=relief,
        groove=(groove * tongue.mask).astype(np.float32),
        depth_shade=depth_shade.astype(np.float32),
        visible_tonsils=visible,
    )
