"""From per-run records to one row per (scenario, target, case).

A row holds, for every metric, the median and the min-max spread over the
runs that passed; check counts are summed over every run. Runs that failed
are counted and named, never averaged in.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from benchmarks.report.stats import spread

Key = tuple[str, str, str]


@dataclass
class Row:
    """The aggregate of one (scenario, target, case) over every run."""

    scenario: str
    target: str
    case: str
    runs: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def median(self, metric: str) -> float:
        """The median of `metric`, NaN when absent."""
        return self.metrics.get(metric, {}).get('median', math.nan)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict of the row."""
        return {
            'scenario': self.scenario,
            'target': self.target,
            'case': self.case,
            'runs': self.runs,
            'failed': self.failed,
            'failures': self.failures,
            'metrics': self.metrics,
            'checks': self.checks,
            'info': self.info,
        }


def _metrics_of(record: dict[str, Any]) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, value in (record.get('metrics') or {}).items():
        if isinstance(value, int | float) and value is not None:
            values[name] = float(value)
    # aws: calls per event by replica and type ('writer sns.Publish').
    for role, calls in (record.get('per_event') or {}).items():
        for call, value in calls.items():
            values[f'{role} {call}'] = float(value)
    return values


def aggregate(records: list[dict[str, Any]]) -> dict[Key, Row]:
    """Groups `records` by (scenario, target, case), in first-seen order."""
    rows: dict[Key, Row] = {}
    samples: dict[Key, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        key = (record['scenario'], record['target'], record['case'])
        row = rows.setdefault(key, Row(*key))
        if record['status'] != 'ok':
            row.failed += 1
            row.failures.append(str(record.get('failure', '')).splitlines()[0])
            continue
        row.runs += 1
        for name, value in _metrics_of(record).items():
            samples[key][name].append(value)
        for name, value in (record.get('checks') or {}).items():
            if isinstance(value, int):
                row.checks[name] = row.checks.get(name, 0) + value
        for name in ('reader', 'layout', 'subscriptions', 'concurrency', 'replicas'):
            if name in record:
                row.info[name] = record[name]
    for key, metrics in samples.items():
        rows[key].metrics = {name: spread(values) for name, values in metrics.items()}
    return rows


def find(rows: dict[Key, Row], scenario: str, target: str, case: str) -> Row | None:
    """The row of (scenario, target, case) if it has passing runs."""
    row = rows.get((scenario, target, case))
    return row if row is not None and row.runs else None


def ratio(numerator: float, denominator: float) -> float:
    """`numerator / denominator`, NaN when either is missing or zero."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator
