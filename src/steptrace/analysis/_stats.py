"""Small statistics helpers shared by the run filters and the release diff."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct``-th percentile (0..100) with linear interpolation, or None for no values.

    Linear interpolation between closest ranks (numpy's default), so p50 of ``[1, 2, 3, 4]`` is 2.5.
    """
    if not values:
        return None
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile must be between 0 and 100, got {pct}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
