"""`RedisQueueLifecycle`: replica heartbeats and the reaping of dead ones."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from a2a_scale.lifecycle import QueueLifecycle
from a2a_scale_redis.keys import KeySpace

if TYPE_CHECKING:
    from a2a_scale_redis.connection import AnyRedis

logger = logging.getLogger(__name__)

Reaper = Callable[[str], Awaitable[None]]
Chore = Callable[[], Awaitable[object]]


class RedisQueueLifecycle(QueueLifecycle):
    """Records live replicas in a sorted set scored by their last heartbeat.

    The Redis backend needs no per-replica queue: a replica's only private
    resource is its Pub/Sub connection, which Redis drops with the process.
    What the registry adds is a list of live replicas, and a hook to release
    what dead replicas left behind (their event-feed consumers).

    Each heartbeat also runs the periodic chores (such as dropping expired
    list-index entries); a failing chore is logged and never stops the beat.
    """

    def __init__(
        self,
        client: AnyRedis,
        *,
        namespace: str,
        instance_id: str,
        reapers: list[Reaper] | None = None,
        chores: list[Chore] | None = None,
    ) -> None:
        self._client = client
        self._key = KeySpace(namespace).instances
        self._instance_id = instance_id
        self.reapers: list[Reaper] = list(reapers or [])
        self.chores: list[Chore] = list(chores or [])

    @property
    def instance_id(self) -> str:
        """The id of this replica."""
        return self._instance_id

    async def provision(self) -> None:
        """Registers this replica."""
        await self.heartbeat()

    async def heartbeat(self) -> None:
        """Records that this replica is alive, then runs the periodic chores."""
        await self._client.zadd(self._key, {self._instance_id: time.time()})
        for chore in self.chores:
            try:
                await chore()
            except Exception:
                logger.exception('A periodic Redis chore failed; will retry')

    async def teardown(self) -> None:
        """Unregisters this replica."""
        await self._client.zrem(self._key, self._instance_id)

    async def live_instances(self) -> list[str]:
        """The ids of the registered replicas."""
        members: Any = await self._client.zrange(self._key, 0, -1)
        return [m.decode() for m in members]

    async def reap(self, *, older_than: float) -> list[str]:
        """Unregisters replicas (never this one) silent for `older_than` seconds."""
        cutoff = time.time() - older_than
        members: Any = await self._client.zrangebyscore(self._key, '-inf', cutoff)
        dead = [m.decode() for m in members]
        reaped = []
        for instance in dead:
            if instance == self._instance_id:
                continue
            for reaper in self.reapers:
                await reaper(instance)
            if await self._client.zrem(self._key, instance):
                reaped.append(instance)
        return reaped
