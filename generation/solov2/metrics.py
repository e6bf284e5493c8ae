"""Per-class DICE between two instance sets: S's validation metric and the originality metric."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from generation.solov2.instances import Instance


def _union_by_class(instances: Sequence[Instance], shape: tuple[int, ...]) -> dict[int, np.ndarray]:
    unions: dict[int, np.ndarray] = {}
    for instance in instances:
        if instance.mask.shape != shape:
            raise ValueError(f"instance masks must all be {shape}, got {instance.mask.shape}")
        unions[instance.category] = unions.get(instance.category, np.zeros(shape, dtype=bool)) | instance.mask
    return unions


def class_dice(pred_instances: Sequence[Instance], ref_instances: Sequence[Instance]) -> dict[int, float]:
    """DICE = 2|P n R| / (|P| + |R|) per category, P and R the unions of that category's masks.

    Both tonsils share a class, so they are scored together. A category in only one of the two
    sets scores 0; one in neither is left out (it says nothing about agreement).
    """
    masks = [i.mask for i in (*pred_instances, *ref_instances)]
    if not masks:
        return {}
    shape = masks[0].shape
    predicted, reference = _union_by_class(pred_instances, shape), _union_by_class(ref_instances, shape)
    scores = {}
    for category in sorted(set(predicted) | set(reference)):
        p = predicted.get(category, np.zeros(shape, dtype=bool))
        r = reference.get(category, np.zeros(shape, dtype=bool))
        scores[category] = float(2 * np.logical_and(p, r).sum() / (p.sum() + r.sum()))
    return scores


def mean_class_dice(per_image: Iterable[dict[int, float]]) -> dict[str, float]:
    """Average `class_dice` results over images: one mean per category and `mean` over categories."""
    collected: dict[int, list[float]] = defaultdict(list)
    for scores in per_image:
        for category, value in scores.items():
            collected[category].append(value)
    summary = {str(category): float(np.mean(values)) for category, values in sorted(collected.items())}
    summary["mean"] = float(np.mean([summary[str(c)] for c in collected])) if collected else 0.0
    return summary
