"""`RedisIndexSweeper`: gives back the memory of expired list-index entries.

Task keys expire on their own (Redis TTLs); the entries the owner list
indexes hold for them do not. Every replica's periodic loop runs `sweep`,
which visits the owners of the sweep registry whose earliest deadline has
passed, earliest first, and drops their expired entries in bounded batches,
so no single script call blocks Redis for long and the indexes shrink with
the tasks at any scale. A listing never waits for it: it drops the caller's
expired entries itself before counting.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from a2a_scale_redis.indexes import INDEX_PRUNE

if TYPE_CHECKING:
    from a2a_scale_redis.store import RedisTaskStore

logger = logging.getLogger(__name__)


class RedisIndexSweeper:
    """Drops expired index entries of every owner, in expiry order.

    Args:
        store: The task store whose indexes to sweep.
        batch: Entries one script call drops at most.
        budget: Entries one `sweep` drops at most (the rest wait for the
            next run of the periodic loop).
    """

    def __init__(
        self, store: RedisTaskStore, *, batch: int = 500, budget: int = 50_000
    ) -> None:
        self._store = store
        self._client = store.client
        self._registry = store.keys.sweep
        self._batch = batch
        self._budget = budget
        self._prune = self._client.register_script(INDEX_PRUNE)

    async def sweep(self) -> int:
        """Drops expired index entries; returns how many it dropped."""
        seconds, micros = await self._client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        inline = not self._store.cluster
        dropped = 0
        while dropped < self._budget:
            due: Any = await self._client.zrangebyscore(
                self._registry, '-inf', now_ms, start=0, num=16
            )
            if not due:
                break
            for raw in due:
                prefix = raw.decode()
                count, score = await self._prune(
                    keys=[f'{prefix}:all'],
                    args=[prefix, self._batch, self._registry if inline else ''],
                )
                dropped += int(count)
                if not inline:
                    await self._settle(prefix, int(score))
        if dropped:
            logger.debug('Dropped %d expired task index entries', dropped)
        return dropped

    async def _settle(self, prefix: str, score: int) -> None:
        """Records an owner's next deadline in the registry (Cluster only).

        A save racing with this may register an earlier deadline that this
        overwrites; that owner's entries are then dropped at the next visit,
        or by a listing, which never counts them.
        """
        if score < 0:
            await self._client.zrem(self._registry, prefix)
        else:
            await self._client.zadd(self._registry, {prefix: score})
