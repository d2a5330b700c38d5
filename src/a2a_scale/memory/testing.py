"""Test hooks of the memory backend: fault injection into its space calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from a2a_scale.memory.backend import MemoryBackend
from a2a_scale.memory.space import MemorySpace

if TYPE_CHECKING:
    from a2a_scale.testing.faults import FaultPlan

FAULTY_CALLS = ('save', 'get', 'read', 'publish', 'delete')


class InjectedServerError(RuntimeError):
    """The error an injected ``'server'`` fault raises."""


class FaultySpace:
    """A `MemorySpace` proxy whose calls in `FAULTY_CALLS` fail as a plan says."""

    def __init__(self, space: MemorySpace, plan: FaultPlan) -> None:
        self._space = space
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._space, name)
        if name not in FAULTY_CALLS:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            fault = self._plan.next_fault(name)
            if fault is None:
                return attribute(*args, **kwargs)
            if not fault.before:
                attribute(*args, **kwargs)
            if fault.kind == 'connection':
                raise ConnectionError(f'injected connection fault in {name}')
            raise InjectedServerError(f'injected server fault in {name}')

        return call


def inject_faults(backend: MemoryBackend, plan: FaultPlan) -> None:
    """Makes `backend`'s store and stream calls into its space fail per `plan`.

    Other replicas of the namespace keep the healthy space.
    """
    faulty: Any = FaultySpace(backend.space, plan)
    backend.task_store.space = faulty
    backend.event_stream.space = faulty
