"""The unit S speaks in: one predicted (or annotated) object instance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Instance:
    """One object: its COCO category id, confidence (1.0 for annotations) and mask."""

    category: int
    score: float
    mask: np.ndarray  # bool [H, W]
