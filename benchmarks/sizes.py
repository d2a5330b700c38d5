"""Workload sizes: ``smoke`` for CI and development, ``full`` for the docs.

Every field can be overridden from the command line with
``--set field=value`` (tuples as comma-separated values), so a slow machine
can shorten a scenario without editing code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Size:
    """How much work each scenario does per run."""

    name: str
    store_seconds: float
    """Timed seconds per store case (after an untimed warm-up)."""
    store_concurrency: tuple[int, ...]
    """Coroutines of the store cases (each owns one task)."""
    latency_updates: int
    """Updates the writer sends in the latency scenario."""
    latency_interval: float
    """Seconds between two updates of the latency scenario."""
    fanout_subscriptions: tuple[int, ...]
    """Subscriptions held by the reader replica, one case each."""
    fanout_layouts: tuple[str, ...]
    """``distinct`` (one task per subscription) and/or ``one`` (all on one)."""
    fanout_one_deliveries: int
    """Deliveries aimed at per ``one`` case (events x subscriptions)."""
    fanout_distinct_writes: int
    """Writes aimed at per ``distinct`` case (events x tasks)."""
    fanout_events: tuple[int, int]
    """Bounds (min, max) of the events written per task in a fan-out case."""
    idle_seconds: float
    """Seconds over which the reader's idle CPU is measured."""
    e2e_requests: int
    """Timed streaming requests per e2e case."""
    e2e_concurrency: int
    """Concurrent clients of the e2e scenario."""
    aws_tasks: int
    """Tasks written concurrently in the aws scenario."""
    aws_events_per_task: int
    """Events per task in the aws scenario."""

    def fanout_events_per_task(self, layout: str, subscriptions: int) -> int:
        """Events written on each task in a fan-out case."""
        low, high = self.fanout_events
        if layout == 'one':
            wanted = self.fanout_one_deliveries // max(subscriptions, 1)
        else:
            wanted = self.fanout_distinct_writes // max(subscriptions, 1)
        return max(low, min(high, wanted))

    def with_overrides(self, overrides: dict[str, str]) -> Size:
        """A copy with fields set from ``name -> text`` pairs.

        Raises:
            ValueError: If a field is unknown or a value does not parse.
        """
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, text in overrides.items():
            if key not in fields or key == 'name':
                known = ', '.join(sorted(k for k in fields if k != 'name'))
                raise ValueError(f'unknown size field {key!r}; known: {known}')
            current = getattr(self, key)
            try:
                changes[key] = _parse(text, current)
            except ValueError as e:
                raise ValueError(f'bad value for {key}: {text!r} ({e})') from None
        if not changes:
            return self
        return dataclasses.replace(self, name=f'{self.name}*', **changes)


def _parse(text: str, like: Any) -> Any:
    if isinstance(like, tuple):
        items = [i.strip() for i in text.split(',') if i.strip()]
        if not items:
            raise ValueError('empty list')
        return tuple(_parse(i, like[0]) if like else i for i in items)
    if isinstance(like, bool):
        return text.lower() in {'1', 'true', 'yes'}
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    return text


SIZES = {
    'smoke': Size(
        name='smoke',
        store_seconds=0.3,
        store_concurrency=(1, 64),
        latency_updates=20,
        latency_interval=0.005,
        fanout_subscriptions=(1, 10),
        fanout_layouts=('distinct', 'one'),
        fanout_one_deliveries=30,
        fanout_distinct_writes=30,
        fanout_events=(3, 3),
        idle_seconds=0.5,
        e2e_requests=8,
        e2e_concurrency=4,
        aws_tasks=4,
        aws_events_per_task=3,
    ),
    'full': Size(
        name='full',
        store_seconds=2.0,
        store_concurrency=(1, 64),
        latency_updates=300,
        latency_interval=0.005,
        fanout_subscriptions=(1, 100, 1000),
        fanout_layouts=('distinct', 'one'),
        fanout_one_deliveries=20_000,
        fanout_distinct_writes=500,
        fanout_events=(1, 50),
        idle_seconds=1.5,
        e2e_requests=1500,
        e2e_concurrency=16,
        aws_tasks=20,
        aws_events_per_task=10,
    ),
}
