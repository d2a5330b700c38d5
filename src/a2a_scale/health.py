"""Health reports of a backend's components.

Every backend reports the same four components, in this order, so that
``a2a-scale check`` reads the same on any backend:

- ``store``: the shared, versioned task store. Counts: ``tasks`` (tasks
  stored in the namespace) when the backend can count them cheaply.
- ``stream``: the cross-replica event stream. Counts: ``subscriptions``
  (open on this replica).
- ``push_store``: the push-notification config store.
- ``replicas``: the replica registry. Counts: ``live`` (replicas with a
  recent heartbeat, this one included).

A count the backend cannot get cheaply is left out rather than guessed; the
`detail` says when a count is approximate. `detail` never holds a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

STORE = 'store'
STREAM = 'stream'
PUSH_STORE = 'push_store'
REPLICAS = 'replicas'
COMPONENTS = (STORE, STREAM, PUSH_STORE, REPLICAS)
"""The components every backend reports, in report order."""


@dataclass(frozen=True)
class ComponentHealth:
    """The health of one component of a backend.

    Attributes:
        component: One of `COMPONENTS`.
        ok: Whether the component works.
        detail: Where it lives, or what is wrong (no secrets).
        latency_ms: How long the probe took, when it did I/O.
        counts: What the component holds, e.g. ``{'tasks': 12}``.
    """

    component: str
    ok: bool
    detail: str = ''
    latency_ms: float | None = None
    counts: Mapping[str, int] = field(default_factory=dict, hash=False)

    def line(self) -> str:
        """Renders the report as one line."""
        status = 'ok' if self.ok else 'FAIL'
        latency = f'{self.latency_ms:.1f} ms' if self.latency_ms is not None else ''
        parts = [f'{self.component:<10}  {status:<4}  {latency:>9}']
        parts.extend(f'{name}={value}' for name, value in self.counts.items())
        if self.detail:
            parts.append(self.detail)
        return '  '.join(parts)


def not_started(reason: str = 'not started') -> list[ComponentHealth]:
    """One failed report per component, for a backend that cannot probe."""
    return [ComponentHealth(c, False, reason) for c in COMPONENTS]


__all__ = [
    'COMPONENTS',
    'PUSH_STORE',
    'REPLICAS',
    'STORE',
    'STREAM',
    'ComponentHealth',
    'not_started',
]
