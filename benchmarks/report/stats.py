"""Percentiles, medians and spreads."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) with linear interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values_ms: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of latencies in milliseconds."""
    return {
        'p50_ms': percentile(values_ms, 50),
        'p90_ms': percentile(values_ms, 90),
        'p99_ms': percentile(values_ms, 99),
        'max_ms': max(values_ms) if values_ms else math.nan,
        'mean_ms': statistics.fmean(values_ms) if values_ms else math.nan,
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum of one metric over several runs."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {'median': math.nan, 'min': math.nan, 'max': math.nan}
    return {
        'median': statistics.median(clean),
        'min': min(clean),
        'max': max(clean),
    }
