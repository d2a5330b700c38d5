"""The targets of DESIGN.md section 4, checked against a run's medians.

The thresholds below are the specification, copied from the design brief
(and, for the PostgreSQL backend, from its own brief: judged against the
SDK's SQL mode on the same server); every measured number comes from the
run. A goal holds when the median of the target meets every bound it has
(absolute, relative to the floor, relative to the SDK's SQL mode, relative
to one replica on the SDK's in-memory stores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.adapters.registry import REFERENCE
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
    baseline_factor: float | None = None
    """Bound on the ratio to the SDK's SQL mode in the same run."""
    only: str | None = None
    """The one target the goal judges (its own goals); `None`: the others."""
    reference_factor: float | None = None
    """Bound on the ratio to the e2e reference (one SDK in-memory replica)."""

    def judges(self, target: str) -> bool:
        """Whether this goal applies to `target`."""
        if self.only is not None:
            return target == self.only
        return target not in OWN_GOALS

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

    def reference(self, rows: dict[Key, Row]) -> float:
        """The reference replica's median of the goal's metric, NaN if absent."""
        row = find(rows, self.scenario, REFERENCE, REFERENCE_CASE)
        return row.median(self.metric) if row else math.nan

    def verdict(
        self,
        value: float,
        floor: float,
        baseline: float = math.nan,
        reference: float = math.nan,
    ) -> bool | None:
        """Whether `value` meets the goal; `None` if it cannot be judged."""
        if math.isnan(value):
            return None
        ok = True
        if self.reference_factor is not None:
            factor = ratio(value, reference)
            if math.isnan(factor):
                return None
            ok &= (
                factor >= self.reference_factor
                if self.higher_is_better
                else factor <= self.reference_factor
            )
        if self.baseline_factor is not None:
            factor = ratio(value, baseline)
            if math.isnan(factor):
                return None
            ok &= (
                factor >= self.baseline_factor
                if self.higher_is_better
                else factor <= self.baseline_factor
            )
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


OWN_GOALS = ('postgres',)
"""Targets judged by their own goals, not by the Redis floor's."""
REFERENCE_CASE = '1-replica'
"""The case of the e2e reference (one replica on the SDK's in-memory stores)."""


def postgres_goals(subscriptions: int) -> list[Goal]:
    """The PostgreSQL backend's goals: against the SDK's SQL mode."""
    n = f'{subscriptions:,}'
    one, distinct = f'one-{subscriptions}', f'distinct-{subscriptions}'
    pg = 'postgres'
    return [
        Goal(
            'PostgreSQL: cross-replica delivery p50',
            'latency',
            ('cross-replica',),
            'p50_ms',
            'ms',
            higher_is_better=False,
            text=f'{LE} 3 ms',
            absolute=3.0,
            design_baseline='~260 ms',
            only=pg,
        ),
        Goal(
            'PostgreSQL: cross-replica delivery p99',
            'latency',
            ('cross-replica',),
            'p99_ms',
            'ms',
            higher_is_better=False,
            text=f'{LE} 10 ms',
            absolute=10.0,
            design_baseline='~500 ms',
            only=pg,
        ),
        *(
            Goal(
                f'PostgreSQL: save (CAS+event) + get, {label}',
                'store',
                (case,),
                'ops_per_s',
                'ops/s',
                higher_is_better=True,
                text=f'{GE} 5{TIMES} SDK SQL',
                baseline_factor=5.0,
                only=pg,
            )
            for case, label in (('c1', '1 coroutine'), ('c64', '64 coroutines'))
        ),
        Goal(
            f'PostgreSQL: {n} subscribers on one task: deliveries/s',
            'fanout',
            (one,),
            'deliveries_per_s',
            '/s',
            higher_is_better=True,
            text=f'{GE} 20,000',
            absolute=20_000,
            only=pg,
        ),
        Goal(
            f'PostgreSQL: {n} subscriptions: connections',
            'fanout',
            (distinct, one),
            'connections',
            '',
            higher_is_better=False,
            text=f'{LE} 4',
            absolute=4,
            design_baseline='15-20',
            only=pg,
        ),
        Goal(
            f'PostgreSQL: idle CPU with {n} idle subscriptions (worse layout)',
            'fanout',
            (distinct, one),
            'idle_cpu_percent',
            '% of a core',
            higher_is_better=False,
            text=f'{LE} 3%',
            absolute=3.0,
            design_baseline='~90%',
            only=pg,
        ),
    ]


def goals(subscriptions: int) -> list[Goal]:
    """The goals of DESIGN.md section 4 for the largest fan-out case run."""
    return [*floor_goals(subscriptions), *postgres_goals(subscriptions)]


def floor_goals(subscriptions: int) -> list[Goal]:
    """The goals judged against the Redis floor (every target but postgres)."""
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
            'Price of clustering: CPU per streamed request, worst replica',
            'e2e',
            ('2-replica',),
            'cpu_ms_per_request_max',
            'ms',
            higher_is_better=False,
            text=f'{LE} 1.25{TIMES} SDK in-memory replica',
            reference_factor=1.25,
            design_baseline='6.7 ms (2.1-2.3\u00d7 of 3.2 ms)',
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
