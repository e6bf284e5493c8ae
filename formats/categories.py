"""The four object classes of the paper, as COCO category ids (DESIGN.md, instance masks)."""

from __future__ import annotations

UVULA = 1
PHARYNGEAL_WALL = 2
TONSIL = 3
TONGUE = 4

CATEGORY_NAMES: dict[int, str] = {
    UVULA: "uvula",
    PHARYNGEAL_WALL: "pharyngeal_wall",
    TONSIL: "tonsil",
    TONGUE: "tongue",
}
