"""The targets of DESIGN.md section 4, checked against a run's medians.

The thresholds below are the specification, copied from the design brief;
every measured number comes from the run. A goal holds when the median of
the target meets every bound it has (absolute and relative to the floor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.report.aggregate import Key, Row, find, ratio
from benchmarks.report.format import GE, LE, TIMES


@dataclass(frozen=True)
class Goal:
    """One line of the targets table."""

    what: str
    scenario: str
    cases: tuple[str, ...]
    """Cases the goal reads; with several, the worst median counts."""
    metric: str
    unit: str
    higher_is_better: bool
    text: str
    """The target as written in DESIGN.md."""
    absolute: float | None = None
    floor_factor: float | None = None
    design_baseline: str = ''
    design_floor: str = ''

    def value(self, rows: dict[Key, Row], target: str) -> Row | None:
        """The row of `target` that decides the goal (the worst case)."""
        found = [
            row
            for case in self.cases
            if (row := find(rows, self.scenario, target, case)) is not None
            and not math.isnan(row.median(self.metric))
        ]
        if not found:
            return None
        pick = min if self.higher_is_better else max
        return pick(found, key=lambda row: row.median(self.metric))

    def verdict(self, value: float, floor: float) -> bool | None:
        """Whether `value` meets the goal; `None` if it cannot be judged."""
        if math.isnan(value):
            return None
        ok = True
        if self.absolute is not None:
            ok &= (
                value >= self.absolute
                if self.higher_is_better
                else value <= self.absolute
            )
        if self.floor_factor is not None:
            factor = ratio(value, floor)
            if math.isnan(factor):
                return None
            ok &= (
                factor >= self.floor_factor
                if self.higher_is_better
                else factor <= self.floor_factor
            )
        return ok


def goals(subscriptions: int) -> list[Goal]:
    """The goals of DESIGN.md section 4 for the largest fan-out case run."""
    n = f'{subscriptions:,}'
    one, distinct = f'one-{subscriptions}', f'distinct-{subscriptions}'
    return [
        Goal(
            'Cross-replica delivery p50',
            'latency',
            ('cross-replica',),
            'p50_ms',
            'ms',
            higher_is_better=False,
            text=f'{LE} 1.0 ms and {LE} 1.3{TIMES} floor',
            absolute=1.0,
            floor_factor=1.3,
            design_baseline='263 ms',
            design_floor='0.74 ms',
        ),
        Goal(
            'Cross-replica delivery p99',
            'latency',
            ('cross-replica',),
            'p99_ms',
            'ms',
            higher_is_better=False,
            text=f'{LE} 2.0 ms and {LE} 1.3{TIMES} floor',
            absolute=2.0,
            floor_factor=1.3,
            design_baseline='504 ms',
            design_floor='1.27 ms',
        ),
        Goal(
            'save (CAS+event) + get, 1 coroutine',
            'store',
            ('c1',),
            'ops_per_s',
            'ops/s',
            higher_is_better=True,
            text=f'{GE} 0.8{TIMES} floor',
            floor_factor=0.8,
            design_baseline='~160',
            design_floor='~2,500',
        ),
        Goal(
            'save (CAS+event) + get, 64 coroutines',
            'store',
            ('c64',),
            'ops_per_s',
            'ops/s',
            higher_is_better=True,
            text=f'{GE} 0.8{TIMES} floor',
            floor_factor=0.8,
            design_baseline='~240',
            design_floor='~3,100',
        ),
        Goal(
            f'{n} subscribers on one task: deliveries/s',
            'fanout',
            (one,),
            'deliveries_per_s',
            '/s',
            higher_is_better=True,
            text=f'{GE} 20,000',
            absolute=20_000,
            design_baseline='~6,000',
            design_floor='~19,000',
        ),
        Goal(
            f'{n} subscribers on one task: backend connections',
            'fanout',
            (one,),
            'connections',
            '',
            higher_is_better=False,
            text=f'{LE} 4',
            absolute=4,
            design_floor=f'{n}',
        ),
        Goal(
            f'Idle CPU with {n} idle subscriptions (worse layout)',
            'fanout',
            (distinct, one),
            'idle_cpu_percent',
            '% of a core',
            higher_is_better=False,
            text=f'{LE} 3%',
            absolute=3.0,
            design_baseline='~90%',
            design_floor='~7%',
        ),
        Goal(
            'AWS: DynamoDB transactions per event',
            'aws',
            ('calls',),
            'dynamodb_transactions_per_event',
            '',
            higher_is_better=False,
            text='1',
            absolute=1.0,
        ),
        Goal(
            'AWS: SNS publishes per event',
            'aws',
            ('calls',),
            'sns_publish_per_event',
            '',
            higher_is_better=False,
            text='1',
            absolute=1.0,
        ),
        Goal(
            'AWS: SQS receive+delete per event per replica',
            'aws',
            ('calls',),
            'sqs_per_event_per_replica',
            '',
            higher_is_better=False,
            text=f'{LE} 0.2 under load',
            absolute=0.2,
        ),
    ]
