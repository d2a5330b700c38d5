"""`MemoryQueueLifecycle`: the memory backend's replica registry."""

from __future__ import annotations

import logging

from a2a_scale.lifecycle import QueueLifecycle
from a2a_scale.memory.space import MemorySpace

logger = logging.getLogger(__name__)


class MemoryQueueLifecycle(QueueLifecycle):
    """Registers a replica in a `MemorySpace` and reaps dead ones.

    The per-replica state of the memory backend is its subscriptions. A
    replica registers at start, beats (which also sweeps expired tasks), and
    at stop, or when another replica reaps it, its subscriptions end.

    Args:
        space: The shared state.
        instance_id: The id of this replica.
    """

    def __init__(self, space: MemorySpace, instance_id: str) -> None:
        self.space = space
        self._instance_id = instance_id

    @property
    def instance_id(self) -> str:
        """The id of this replica."""
        return self._instance_id

    async def provision(self) -> None:
        """Registers this replica; idempotent."""
        self.space.beat(self._instance_id)

    async def heartbeat(self) -> None:
        """Records that this replica is alive and drops expired tasks."""
        self.space.beat(self._instance_id)
        dropped = self.space.sweep()
        if dropped:
            logger.debug('Dropped %d expired tasks', dropped)

    async def teardown(self) -> None:
        """Unregisters this replica and ends its subscriptions; idempotent."""
        self.space.forget(self._instance_id)
        self.space.close_waiters(self._instance_id)

    async def reap(self, *, older_than: float) -> list[str]:
        """Forgets replicas silent for `older_than` s and ends their subscriptions."""
        reaped = []
        for instance_id in self.space.silent_replicas(
            older_than, exclude=self._instance_id
        ):
            if self.space.forget(instance_id):
                self.space.close_waiters(instance_id)
                reaped.append(instance_id)
        return reaped
