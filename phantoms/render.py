"""Render one phantom throat photograph with its exact instance mask.

The label map comes first (`anatomy.build_anatomy`); the photograph is then painted from it:
per-structure colour, procedural texture (noise octaves, crypts, papillae, follicles, vessels,
exudate), relief shading under a flash next to the lens, contact shadows where a structure lies in
front of another, wet specular highlights, then the camera (vignetting, white balance, softness,
sensor noise). Because pixels are painted from the labels, the mask is exact by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from formats.categories import PHARYNGEAL_WALL, TONGUE, TONSIL, UVULA
from formats.masks import Instance
from phantoms import anatomy as A
from phantoms.anatomy import AnatomyConfig, build_anatomy, pixel_grid
from phantoms.metadata import case_metadata
from phantoms.noise import fractal_noise, smoothstep, value_noise
from phantoms.params import CaseParams, ParameterRanges, sample_params

RGB = tuple[float, float, float]
MIN_SIZE = 32
SIZE_MULTIPLE = 8


def _per_region(values: dict[int, float | RGB], default: float | RGB) -> np.ndarray:
    """Lookup table indexed by region code ([R] or [R, 3], float32)."""
    return np.array([values.get(code, default) for code in range(A.REGION_COUNT)], dtype=np.float32)


@dataclass(frozen=True)
class AppearanceConfig:
    """Colours (linear RGB 0..1), light and texture strengths of the phantom tissue."""

    colour: dict[int, RGB] = field(
        default_factory=lambda: {
            A.CHEEK: (0.86, 0.46, 0.43),
            A.FOSSA: (0.8, 0.34, 0.3),
            A.WALL: (0.82, 0.36, 0.31),
            A.DEPTH: (0.3, 0.07, 0.05),
            A.POSTERIOR_PILLAR: (0.86, 0.42, 0.38),
            A.TONSIL_LEFT: (0.86, 0.43, 0.4),
            A.TONSIL_RIGHT: (0.86, 0.43, 0.4),
            A.ANTERIOR_PILLAR: (0.87, 0.46, 0.43),
            A.UVULA: (0.92, 0.52, 0.49),
            A.TONGUE: (0.92, 0.6, 0.57),
            A.LIPS: (0.22, 0.07, 0.05),
        }
    )
    inflamed_colour: RGB = (0.9, 0.2, 0.17)
    inflammability: dict[int, float] = field(
        default_factory=lambda: {
            A.CHEEK: 0.45, A.FOSSA: 0.6, A.WALL: 0.85, A.POSTERIOR_PILLAR: 0.8, A.TONSIL_LEFT: 1.0,
            A.TONSIL_RIGHT: 1.0, A.ANTERIOR_PILLAR: 0.75, A.UVULA: 0.75, A.TONGUE: 0.15,
        }
    )
    light: dict[int, float] = field(  # flash fall-off with distance from the lens
        default_factory=lambda: {
            A.CHEEK: 0.88, A.FOSSA: 0.8, A.WALL: 0.66, A.DEPTH: 0.5, A.POSTERIOR_PILLAR: 0.72,
            A.TONSIL_LEFT: 0.9, A.TONSIL_RIGHT: 0.9, A.ANTERIOR_PILLAR: 0.88, A.UVULA: 0.88,
            A.TONGUE: 1.0, A.LIPS: 0.35,
        }
    )
    layer: dict[int, float] = field(  # how far in front each structure lies, for contact shadows
        default_factory=lambda: {
            A.CHEEK: 3.0, A.FOSSA: 1.0, A.POSTERIOR_PILLAR: 1.0, A.TONSIL_LEFT: 2.0, A.TONSIL_RIGHT: 2.0,
            A.ANTERIOR_PILLAR: 3.0, A.UVULA: 3.0, A.TONGUE: 4.0, A.LIPS: 5.0,
        }
    )
    gloss: dict[int, float] = field(
        default_factory=lambda: {
            A.CHEEK: 0.04, A.WALL: 0.25, A.POSTERIOR_PILLAR: 0.3, A.TONSIL_LEFT: 0.8,
            A.TONSIL_RIGHT: 0.8, A.ANTERIOR_PILLAR: 0.12, A.UVULA: 1.0, A.TONGUE: 0.8,
        }
    )
    mottling: dict[int, float] = field(  # low-frequency colour variation
        default_factory=lambda: {A.DEPTH: 0.25, A.LIPS: 0.3, A.TONSIL_LEFT: 0.12, A.TONSIL_RIGHT: 0.12},
    )
    default_mottling: float = 0.08
    mottling_octaves: int = 3
    grain_octaves: int = 2
    persistence: float = 0.5
    grain: dict[int, float] = field(  # fine texture: papillae, crypts' bumps
        default_factory=lambda: {A.TONGUE: 0.07, A.TONSIL_LEFT: 0.08, A.TONSIL_RIGHT: 0.08, A.WALL: 0.05},
    )
    default_grain: float = 0.03
    ambient: float = 0.45
    diffuse: float = 0.55
    shadow_tint: RGB = (1.0, 1.4, 1.5)  # exponents: darker tissue turns red-brown, never grey
    wall_depth_darkening: float = 0.45
    contact_shadow: float = 0.22
    contact_shadow_blur: float = 0.02  # fraction of the image size
    contact_shadow_layers: float = 2.0  # depth differences beyond this cast no darker shadow
    mottling_cells: int = 4
    grain_cells_per_px: float = 1 / 4
    crypt_cells: int = 36  # across the frame, so crypts scale with the tonsil
    crypt_threshold: tuple[float, float] = (1.1, 1.6)
    crypt_darkening: float = 0.35
    crypt_relief: float = 0.15
    exudate_colour: RGB = (0.95, 0.9, 0.74)
    exudate_cells: int = 22
    exudate_edge: float = 0.15
    exudate_relief: float = 0.95
    coating_colour: RGB = (0.93, 0.84, 0.78)
    coating_strength: float = 0.4
    coating_patchiness: tuple[float, float] = (-0.5, 1.0)  # noise range over which coating fades in
    groove_darkening: float = 0.3
    follicle_colour: RGB = (0.96, 0.5, 0.45)
    follicles_max: int = 70
    follicle_relief: float = 0.5
    follicle_min_blur_px: float = 0.8  # keeps one-pixel follicles round at small sizes
    follicle_opacity: float = 0.6
    follicle_radius: tuple[float, float] = (0.006, 0.014)  # fraction of the image size
    vessels_max: int = 7
    vessel_steps: int = 14
    vessel_step: float = 0.025
    vessel_turn: float = 0.5  # radians of wander per step
    vessel_blur: float = 0.002  # fraction of the image size
    vessel_tint: RGB = (0.12, 0.4, 0.4)  # how much each channel darkens on a vessel
    specular_relief: tuple[float, float] = (0.85, 0.99)
    specular_spots: tuple[float, float] = (1.6, 2.2)
    specular_cells: int = 32
    vignette_power: float = 2.0
    white_balance: RGB = (0.07, 0.0, -0.07)  # channel gain per unit colour temperature
    softness: float = 0.0025  # Gaussian blur sigma, fraction of the image size
    min_softness_px: float = 0.3
    dark_noise_boost: float = 1.3
    min_noise_share: float = 0.2


@dataclass(frozen=True)
class PhantomCase:
    """A rendered case: photograph, exact instance mask, parameters and archive metadata."""

    image: np.ndarray  # uint8 [S, S, 3] RGB
    instance_mask: np.ndarray  # uint8 [S, S], 0 background, else Instance.instance_id
    instances: tuple[Instance, ...]
    params: CaseParams
    metadata: dict[str, str]


# labelled regions in instance-id order (wall, tonsils image-left to right, uvula, tongue)
INSTANCE_REGIONS = (
    (A.WALL, PHARYNGEAL_WALL),
    (A.TONSIL_LEFT, TONSIL),
    (A.TONSIL_RIGHT, TONSIL),
    (A.UVULA, UVULA),
    (A.TONGUE, TONGUE),
)


def check_size(size: int) -> int:
    """Reject sizes the networks cannot use; returns `size`."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE or size % SIZE_MULTIPLE:
        raise ValueError(f"size must be a multiple of {SIZE_MULTIPLE} and at least {MIN_SIZE} px, got {size!r}")
    return size


def _instances(region: np.ndarray) -> tuple[np.ndarray, tuple[Instance, ...]]:
    """Instance-id map ([S, S] uint8) and instances of the labelled regions that are visible."""
    lut = np.zeros(A.REGION_COUNT, dtype=np.uint8)
    instances: list[Instance] = []
    present = np.bincount(region.ravel(), minlength=A.REGION_COUNT)
    for code, category in INSTANCE_REGIONS:
        if present[code]:
            instance = Instance(instance_id=len(instances) + 1, category_id=category)
            lut[code] = instance.instance_id
            instances.append(instance)
    return lut[region], tuple(instances)


def _random_pixels(rng: np.random.Generator, mask: np.ndarray, count: int) -> np.ndarray:
    """`count` (x, y) pixel positions drawn uniformly inside `mask` ([N, 2] int)."""
    flat = np.flatnonzero(mask)
    if count <= 0 or flat.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    picks = flat[rng.integers(flat.size, size=count)]
    return np.stack([picks % mask.shape[1], picks // mask.shape[1]], axis=1)


def _follicle_layer(rng: np.random.Generator, wall: np.ndarray, amount: float, cfg: AppearanceConfig) -> np.ndarray:
    """Small raised lymphoid follicles on the wall, float32 [S, S] 0..1."""
    size = wall.shape[0]
    layer = np.zeros((size, size), dtype=np.float32)
    centres = _random_pixels(rng, wall, int(round(amount * cfg.follicles_max)))
    radii = rng.uniform(*cfg.follicle_radius, size=len(centres)) * size
    for (cx, cy), radius in zip(centres, radii):
        cv2.circle(layer, (int(cx), int(cy)), max(1, int(round(radius))), 1.0, -1, cv2.LINE_AA)
    sigma = max(cfg.follicle_radius[0] * size, cfg.follicle_min_blur_px)
    return cv2.GaussianBlur(layer, (0, 0), sigma) * wall


def _vessel_layer(rng: np.random.Generator, where: np.ndarray, amount: float, cfg: AppearanceConfig) -> np.ndarray:
    """Thin wandering vessels, float32 [S, S] 0..1."""
    size = where.shape[0]
    layer = np.zeros((size, size), dtype=np.float32)
    starts = _random_pixels(rng, where, int(round(amount * cfg.vessels_max)))
    step = cfg.vessel_step * size
    for start in starts:
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, cfg.vessel_turn, cfg.vessel_steps))
        path = start + np.cumsum(np.stack([np.cos(heading), np.sin(heading)], axis=1) * step, axis=0)
        points = np.vstack([start, path]).round().astype(np.int32)
        cv2.polylines(layer, [points], False, 1.0, 1, cv2.LINE_AA)
    return cv2.GaussianBlur(layer, (0, 0), cfg.vessel_blur * size) * where


def _channels(rgb: RGB) -> np.ndarray:
    """An RGB triple shaped [3, 1, 1] to broadcast over planar images."""
    return np.asarray(rgb, dtype=np.float32)[:, None, None]


def _mix(colour: np.ndarray, target: RGB, amount: np.ndarray) -> np.ndarray:
    """Blend planar `colour` [3, S, S] towards `target` by `amount` [S, S] (0..1)."""
    return colour + (_channels(target) - colour) * amount


@dataclass(frozen=True)
class _Tissue:
    """Albedo of the scene and the texture fields that also change its relief."""

    colour: np.ndarray  # float32 [3, S, S], planar so that [S, S] fields broadcast cheaply
    follicles: np.ndarray  # float32 [S, S]
    exudate: np.ndarray  # float32 [S, S]
    bumps: np.ndarray  # float32 [S, S], fine relief noise


def _tissue(params: CaseParams, anatomy: A.Anatomy, rng: np.random.Generator, cfg: AppearanceConfig) -> _Tissue:
    """Per-structure colour, inflammation, procedural texture, exudate, coating, follicles, vessels."""
    region = anatomy.region
    size = region.shape[0]
    tonsil = (region == A.TONSIL_LEFT) | (region == A.TONSIL_RIGHT)
    wall = region == A.WALL

    inflamed = params.redness * _per_region(cfg.inflammability, 0.0)[region]
    colour = _mix(_per_region(cfg.colour, (0.0, 0.0, 0.0)).T[:, region], cfg.inflamed_colour, inflamed)  # [3, S, S]

    mottle = fractal_noise(rng, size, cfg.mottling_cells, cfg.mottling_octaves, cfg.persistence)
    grain = fractal_noise(rng, size, int(size * cfg.grain_cells_per_px), cfg.grain_octaves, cfg.persistence)
    texture = 1.0 + _per_region(cfg.mottling, cfg.default_mottling)[region] * mottle
    texture += _per_region(cfg.grain, cfg.default_grain)[region] * grain
    colour *= texture

    crypts = smoothstep(value_noise(rng, size, cfg.crypt_cells), *cfg.crypt_threshold) * tonsil
    colour *= 1.0 - cfg.crypt_darkening * crypts

    exudate = np.zeros((size, size), dtype=np.float32)
    if params.exudate > 0 and tonsil.any():
        # plaques sit in and around the crypts and cover the requested share of the tonsils
        patches = fractal_noise(rng, size, cfg.exudate_cells, cfg.grain_octaves, cfg.persistence) + crypts
        cut = float(np.quantile(patches[tonsil], 1.0 - params.exudate))
        exudate = smoothstep(patches, cut, cut + cfg.exudate_edge) * tonsil
        colour = _mix(colour, cfg.exudate_colour, exudate)

    # coating gathers towards the back of the tongue, where its relief falls away
    coating = params.tongue_coating * cfg.coating_strength * (1.0 - anatomy.relief) * smoothstep(mottle, *cfg.coating_patchiness)
    colour = _mix(colour, cfg.coating_colour, coating * (region == A.TONGUE))

    follicles = _follicle_layer(rng, wall, params.follicles, cfg)
    colour = _mix(colour, cfg.follicle_colour, cfg.follicle_opacity * follicles)
    vessels = _vessel_layer(rng, wall | (region == A.CHEEK), params.vessels, cfg)
    colour *= 1.0 - vessels * _channels(cfg.vessel_tint)
    return _Tissue(colour=colour, follicles=follicles, exudate=exudate, bumps=grain * tonsil)


def _shade(params: CaseParams, anatomy: A.Anatomy, relief: np.ndarray, cfg: AppearanceConfig) -> np.ndarray:
    """Irradiance from a flash beside the lens, float32 [S, S] 0..1: distance fall-off per
    structure, relief, the wall darkening into the depth, the tongue groove, contact shadows
    where a structure lies in front of another, and the light cone's vignetting."""
    region = anatomy.region
    size = region.shape[0]
    shade = _per_region(cfg.light, 1.0)[region] * (cfg.ambient + cfg.diffuse * relief)
    shade *= np.where(region == A.WALL, 1.0 - cfg.wall_depth_darkening * (1.0 - anatomy.depth_shade), 1.0)
    shade *= 1.0 - cfg.groove_darkening * anatomy.groove
    layer = _per_region(cfg.layer, 0.0)[region]
    in_front = cv2.GaussianBlur(layer, (0, 0), cfg.contact_shadow_blur * size) - layer
    shade *= 1.0 - cfg.contact_shadow * np.clip(in_front, 0.0, cfg.contact_shadow_layers)
    u, v = pixel_grid(size)
    shade *= 1.0 - params.vignetting * ((u * u + v * v) / 2.0) ** (cfg.vignette_power / 2.0)
    return np.clip(shade, 0.0, 1.0)


def paint(params: CaseParams, anatomy: A.Anatomy, rng: np.random.Generator, cfg: AppearanceConfig) -> np.ndarray:
    """The photograph of `anatomy` as float32 [S, S, 3] in 0..1."""
    region = anatomy.region
    size = region.shape[0]
    tissue = _tissue(params, anatomy, rng, cfg)
    relief = np.clip(anatomy.relief + cfg.follicle_relief * tissue.follicles + cfg.crypt_relief * tissue.bumps, 0.0, 1.0)
    relief = np.maximum(relief, tissue.exudate * cfg.exudate_relief)  # raised plaques catch the flash
    shade = _shade(params, anatomy, relief, cfg)
    image = tissue.colour * np.stack([shade**exponent for exponent in cfg.shadow_tint])  # [3, S, S]

    # wet tissue: small sharp highlights where a convex surface faces the flash
    spots = value_noise(rng, size, cfg.specular_cells)
    specular = params.flash * _per_region(cfg.gloss, 0.0)[region] * smoothstep(relief, *cfg.specular_relief)
    specular *= smoothstep(spots + tissue.follicles, *cfg.specular_spots)
    image += (1.0 - image) * specular

    # camera: white balance, optics softness, sensor noise strongest in the dark
    image *= 1.0 + params.colour_temperature * _channels(cfg.white_balance)
    image = np.ascontiguousarray(image.transpose(1, 2, 0))  # [S, S, 3]
    image = cv2.GaussianBlur(image, (0, 0), max(cfg.softness * size, cfg.min_softness_px))
    noise_gain = np.clip(cfg.dark_noise_boost - image.mean(axis=2, keepdims=True), cfg.min_noise_share, None)
    image += rng.standard_normal(image.shape, dtype=np.float32) * params.noise_sigma * noise_gain
    return np.clip(image, 0.0, 1.0)


def render_params(params: CaseParams, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[Instance, ...]]:
    """Photograph (uint8 [S, S, 3]), instance mask (uint8 [S, S]) and instances of `params`.

    `rng` draws the texture; exposed so tests and tools can vary one parameter at a time.
    """
    check_size(size)
    anatomy = build_anatomy(params, size, rng, AnatomyConfig())
    image = paint(params, anatomy, rng, AppearanceConfig())
    instance_mask, instances = _instances(anatomy.region)
    return (image * 255.0 + 0.5).astype(np.uint8), instance_mask, instances


def render_case(seed: int, index: int, size: int) -> PhantomCase:
    """The phantom case `index` of the archive `seed` at `size` px; depends on nothing else."""
    check_size(size)
    rng = np.random.default_rng([seed, index])
    params = sample_params(rng, ParameterRanges())
    image, instance_mask, instances = render_params(params, size, rng)
    return PhantomCase(
        image=image,
        instance_mask=instance_mask,
        instances=instances,
        params=params,
        metadata=case_metadata(seed, index, params),
    )
