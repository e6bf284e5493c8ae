"""The free-hand query sketches both evaluations draw: one phantom, one drawer style, one abstraction level.

Shared by the retrieval and the generation evaluation, so both grade the same kind of drawing.
A named style is drawn at a fixed position in its abstraction range (`ABSTRACTION_LEVELS`, cycled
by query index); the simulator's default draws a style and a level per sketch ("random").
"""

from __future__ import annotations

import numpy as np

from formats.errors import InputError

DEFAULT_STYLE = "default"  # the simulator's default: a drawer style drawn per sketch
ABSTRACTION_LEVELS = (0.0, 0.5, 1.0)  # positions in each style's abstraction range
RANDOM_LEVEL = "random"


def level_label(style: str, index: int) -> str:
    """The abstraction label of query `index` in `style`: its position in the style's range, or "random"."""
    return RANDOM_LEVEL if style == DEFAULT_STYLE else f"{ABSTRACTION_LEVELS[index % len(ABSTRACTION_LEVELS)]:.1f}"


def style_names(text: str | None) -> tuple[str, ...]:
    """The styles to draw: all simulator drawer styles and the default, or the comma-separated ones named (checked)."""
    from phantoms.freehand import DRAWER_STYLES

    known = (DEFAULT_STYLE, *(style.name for style in DRAWER_STYLES))
    if text is None:
        return known
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise InputError(f"unknown drawer style {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}")
    return names


def draw_freehand(instance_mask: np.ndarray, categories: dict[int, int], name: str, style: str, index: int,
                  canvas: int, seed: int) -> np.ndarray:
    """Free-hand sketch uint8 [canvas, canvas] of one phantom in `style` at `level_label(style, index)`."""
    import cv2

    from phantoms.freehand import drawer_style, freehand_sketch, sketch_seed

    instance = cv2.resize(instance_mask, (canvas, canvas), interpolation=cv2.INTER_NEAREST)
    query_seed = sketch_seed(seed, f"{style}:{name}")
    if style == DEFAULT_STYLE:
        return freehand_sketch(instance, categories, query_seed)
    drawer = drawer_style(style)
    low, high = drawer.abstraction
    return freehand_sketch(instance, categories, query_seed, low + (high - low) * float(level_label(style, index)), drawer)
