"""Per-case parameters of a phantom throat photograph and the diagnosis they imply.

A case first draws a clinical picture (so that every diagnosis and Brodsky grade occurs often
enough to learn from), then the anatomy and camera parameters within that picture's ranges. The
diagnosis written to the metadata is then *derived* from the parameters by `diagnose`, so the
label always agrees with what is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Range = tuple[float, float]

NORMAL = "normal"
TONSILLAR_HYPERTROPHY = "tonsillar hypertrophy"
PHARYNGITIS = "pharyngitis"
ACUTE_TONSILLITIS = "acute tonsillitis"
EXUDATIVE_TONSILLITIS = "exudative tonsillitis"
DIAGNOSES = (NORMAL, TONSILLAR_HYPERTROPHY, PHARYNGITIS, ACUTE_TONSILLITIS, EXUDATIVE_TONSILLITIS)
BRODSKY_GRADES = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class ParameterRanges:
    """Distributions of the case parameters (all lengths are fractions of the frame)."""

    # clinical picture -> probability, and its Brodsky grade weights (grades 0..4)
    picture_weights: dict[str, float] = field(
        default_factory=lambda: {
            NORMAL: 0.28,
            TONSILLAR_HYPERTROPHY: 0.2,
            PHARYNGITIS: 0.16,
            ACUTE_TONSILLITIS: 0.16,
            EXUDATIVE_TONSILLITIS: 0.2,
        }
    )
    grade_weights: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            NORMAL: (0.4, 0.35, 0.25, 0.0, 0.0),
            TONSILLAR_HYPERTROPHY: (0.0, 0.0, 0.0, 0.55, 0.45),
            PHARYNGITIS: (0.35, 0.35, 0.3, 0.0, 0.0),
            ACUTE_TONSILLITIS: (0.0, 0.2, 0.4, 0.3, 0.1),
            EXUDATIVE_TONSILLITIS: (0.0, 0.15, 0.35, 0.3, 0.2),
        }
    )
    # Brodsky: share of the oropharyngeal width taken by both tonsils, per grade
    grade_width_share: tuple[Range, ...] = ((0.02, 0.1), (0.12, 0.24), (0.27, 0.48), (0.52, 0.73), (0.77, 0.92))
    grade0_hidden_probability: float = 0.5
    tonsil_asymmetry: float = 0.12
    tonsil_aspect: Range = (1.15, 1.6)
    tonsil_level: Range = (0.42, 0.55)
    uvula_length: Range = (0.1, 0.22)
    uvula_width: Range = (0.075, 0.125)
    uvula_deviation: Range = (-1.0, 1.0)
    tongue_height: Range = (0.25, 0.42)
    tongue_arc: Range = (0.15, 0.55)
    mouth_opening: Range = (0.85, 1.12)
    palate_height: Range = (0.1, 0.2)
    wall_depth: Range = (0.12, 0.4)
    healthy_redness: Range = (0.0, 0.4)
    inflamed_redness: Range = (0.55, 1.0)
    background_follicles: Range = (0.0, 0.45)
    pharyngitis_follicles: Range = (0.6, 1.0)
    exudate: Range = (0.08, 0.45)
    vessels: Range = (0.0, 1.0)
    tongue_coating: Range = (0.0, 1.0)
    flash: Range = (0.3, 1.0)
    vignetting: Range = (0.25, 0.65)
    colour_temperature: Range = (-1.0, 1.0)
    noise_sigma: Range = (0.008, 0.03)
    rotation_deg: Range = (-7.0, 7.0)
    shift: Range = (-0.05, 0.05)
    zoom: Range = (0.95, 1.08)
    # thresholds that turn parameters into findings
    inflamed_at: float = 0.5
    cobblestoning_at: float = 0.5
    deviated_at: float = 0.5
    long_uvula_at: float = 0.19
    coated_tongue_at: float = 0.7


@dataclass(frozen=True)
class CaseParams:
    """Everything that varies between two phantom photographs."""

    tonsil_grade: int
    tonsil_extent: tuple[float, float]  # image-left, image-right: share of the half-width occupied
    tonsil_hidden: tuple[bool, bool]  # grade 0 may leave a tonsil out of sight in its fossa
    tonsil_aspect: float
    tonsil_level: float
    uvula_length: float
    uvula_width: float
    uvula_deviation: float  # -1..1, tip offset towards image-left (-) or image-right (+)
    tongue_height: float
    tongue_arc: float
    mouth_opening: float
    palate_height: float
    wall_depth: float
    redness: float
    exudate: float  # 0 = none, else share of the tonsil surface covered
    follicles: float
    vessels: float
    tongue_coating: float
    flash: float
    vignetting: float
    colour_temperature: float
    noise_sigma: float
    rotation_deg: float
    shift: tuple[float, float]
    zoom: float


# Parameters drawn uniformly from the range of the same name, in the order they are drawn: the order
# is part of the phantom streams (a seed must keep making the same cases).
_ANATOMY = ("tonsil_aspect", "tonsil_level", "uvula_length", "uvula_width", "uvula_deviation", "tongue_height",
            "tongue_arc", "mouth_opening", "palate_height", "wall_depth")
_SURFACE_AND_CAMERA = ("vessels", "tongue_coating", "flash", "vignetting", "colour_temperature", "noise_sigma",
                       "rotation_deg")


def _uniform(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _draw(rng: np.random.Generator, ranges: ParameterRanges, names: tuple[str, ...]) -> dict[str, float]:
    """One uniform draw per name, from the range of that name, in the order named."""
    return {name: _uniform(rng, getattr(ranges, name)) for name in names}


def sample_params(rng: np.random.Generator, ranges: ParameterRanges = ParameterRanges()) -> CaseParams:
    """Draw one case: a clinical picture, then its anatomy, appearance and camera."""
    pictures = list(ranges.picture_weights)
    weights = np.array([ranges.picture_weights[p] for p in pictures])
    picture = pictures[int(rng.choice(len(pictures), p=weights / weights.sum()))]
    grade_p = np.array(ranges.grade_weights[picture])
    grade = int(rng.choice(BRODSKY_GRADES, p=grade_p / grade_p.sum()))

    share = _uniform(rng, ranges.grade_width_share[grade])
    asymmetry = _uniform(rng, (-ranges.tonsil_asymmetry, ranges.tonsil_asymmetry))
    if grade == 0:
        hidden = tuple(bool(h) for h in rng.random(2) < ranges.grade0_hidden_probability)
        extent = (share, _uniform(rng, ranges.grade_width_share[0]))
    else:
        hidden = (False, False)
        extent = (share * (1 + asymmetry), share * (1 - asymmetry))

    inflamed = picture in (PHARYNGITIS, ACUTE_TONSILLITIS, EXUDATIVE_TONSILLITIS)
    anatomy = _draw(rng, ranges, _ANATOMY)
    redness = _uniform(rng, ranges.inflamed_redness if inflamed else ranges.healthy_redness)
    exudate = _uniform(rng, ranges.exudate) if picture == EXUDATIVE_TONSILLITIS else 0.0
    follicles = _uniform(rng, ranges.pharyngitis_follicles if picture == PHARYNGITIS else ranges.background_follicles)
    surface_and_camera = _draw(rng, ranges, _SURFACE_AND_CAMERA)
    shift = (_uniform(rng, ranges.shift), _uniform(rng, ranges.shift))
    return CaseParams(tonsil_grade=grade, tonsil_extent=extent, tonsil_hidden=hidden, **anatomy, redness=redness,
                      exudate=exudate, follicles=follicles, **surface_and_camera, shift=shift,
                      zoom=_uniform(rng, ranges.zoom))


def diagnose(params: CaseParams, ranges: ParameterRanges = ParameterRanges()) -> str:
    """The diagnosis the drawn signs support (exudate > cobblestoning > redness > size)."""
    inflamed = params.redness >= ranges.inflamed_at
    if params.exudate > 0 and not all(params.tonsil_hidden):
        return EXUDATIVE_TONSILLITIS
    if inflamed and params.follicles >= ranges.cobblestoning_at:
        return PHARYNGITIS
    if inflamed:
        return ACUTE_TONSILLITIS
    if params.tonsil_grade >= 3:
        return TONSILLAR_HYPERTROPHY
    return NORMAL


def findings(params: CaseParams, ranges: ParameterRanges = ParameterRanges()) -> str:
    """A short free-text findings line as a report would have it (sides are the patient's)."""
    # the camera faces the patient: image-left is the patient's right
    sides = ("right", "left")
    items = [f"tonsils Brodsky grade {params.tonsil_grade}"]
    if params.tonsil_grade == 0:
        hidden = [side for side, h in zip(sides, params.tonsil_hidden) if h]
        items.append("tonsils within the fossae" + (f", {' and '.join(hidden)} not visible" if hidden else ""))
    if params.tonsil_grade == 4:
        items.append("kissing tonsils")
    if params.redness >= ranges.inflamed_at:
        items.append("erythema of the tonsils and pharynx")
    if params.exudate > 0:
        items.append("white exudate on the tonsils")
    if params.follicles >= ranges.cobblestoning_at:
        items.append("lymphoid follicles on the posterior wall (cobblestoning)")
    if abs(params.uvula_deviation) >= ranges.deviated_at:
        items.append(f"uvula deviated to the {sides[0] if params.uvula_deviation < 0 else sides[1]}")
    if params.uvula_length >= ranges.long_uvula_at:
        items.append("elongated uvula")
    if params.tongue_coating >= ranges.coated_tongue_at:
        items.append("coated tongue")
    return "; ".join(items)
