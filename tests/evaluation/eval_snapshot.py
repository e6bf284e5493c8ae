"""A report JSON of `s2m eval all` with what depends on the run taken out: paths, clocks, the machine.

Timings keep their keys (a row's latency is still reported) but not their values; every other
number stays, so two runs on the same code, data and seeds compare equal.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TIMED = {"seconds", "latency_ms_per_query", "ms_per_image"}  # wall clock: keys kept, values not
MACHINE = {"machine", "code", "measured"}  # where and when it ran
TIMING = "<timing>"
# figures read off Inception's features: their float32 sums differ between CPU instruction sets (AVX2 and
# AVX-512 boxes disagree from the sixth digit, KID near zero from the fourth), so they compare at this
# tolerance; a change of what the evaluation measures moves them by far more
INCEPTION_FIGURES = {"fid", "kid", "kid_std"}
EXACT, INCEPTION = (1e-6, 1e-12), (1e-4, 1e-6)  # (relative, absolute) tolerance


def normalised(report: Any, roots: dict[str, Path]) -> Any:
    """`report` with each of `roots`' paths replaced by its name and clock values by `TIMING`."""
    def walk(value: Any, timed: bool) -> Any:
        if isinstance(value, dict):
            return {key: (TIMING if key in MACHINE else walk(item, timed or key in TIMED)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, timed) for item in value]
        if timed and isinstance(value, (int, float)):
            return TIMING
        if isinstance(value, str):
            for name, root in roots.items():
                value = value.replace(str(root), f"<{name}>")
        return value

    return walk(report, False)


def differences(expected: Any, actual: Any, where: str = "", tolerance: tuple[float, float] = EXACT) -> list[str]:
    """Where two normalised reports differ: a key present in one only, or a value (numbers within `tolerance`)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{where}/{key}: only expected" for key in expected.keys() - actual.keys()]
        found += [f"{where}/{key}: only actual" for key in actual.keys() - expected.keys()]
        for key in expected.keys() & actual.keys():
            found += differences(expected[key], actual[key], f"{where}/{key}",
                                 INCEPTION if key in INCEPTION_FIGURES else tolerance)
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [line for i, (a, b) in enumerate(zip(expected, actual)) for line in differences(a, b, f"{where}[{i}]", tolerance)]
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers) and not isinstance(expected, bool):
        if math.isclose(expected, actual, rel_tol=tolerance[0], abs_tol=tolerance[1]) or (math.isnan(expected) and math.isnan(actual)):
            return []
    elif expected == actual:
        return []
    return [f"{where}: expected {expected!r}, got {actual!r}"]
