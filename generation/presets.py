"""Preset names and the image resolution each one trains at.

Every network config (`GeneratorConfig`, `SynthesizerConfig`, ...) has a `for_preset(name)`
constructor; this module only fixes the names and resolutions they share (DESIGN.md, Presets).
"""

from __future__ import annotations

from pathlib import Path

PRESET_RESOLUTION: dict[str, int] = {"tiny": 32, "small": 64, "paper": 256}
SHIPPED_BUNDLE = Path(__file__).resolve().parents[1] / "models" / "small"  # the only bundle in git


def check_preset(name: str) -> str:
    """Return `name` if it is a known preset, else raise a ValueError listing the choices."""
    if name not in PRESET_RESOLUTION:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESET_RESOLUTION)}")
    return name
