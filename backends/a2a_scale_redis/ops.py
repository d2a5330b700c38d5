"""`RedisClusterView`: an operator's view of a Redis namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from a2a_scale.codec import decode_event, decode_task
from a2a_scale.ops import (
    ClusterView,
    FeedEvent,
    OperatorTask,
    UnsupportedOperationError,
)
from a2a_scale_redis.keys import KeySpace, decode_id
from a2a_scale_redis.namespace import task_pattern

if TYPE_CHECKING:
    from a2a_scale_redis.connection import AnyRedis

_SCAN_COUNT = 1000
_BATCH = 500


class RedisClusterView(ClusterView):
    """Every task, replica and event of a namespace on Redis.

    Listing scans the namespace's task keys (``SCAN``, every primary of a
    Cluster); events come from the namespace's event feed stream, read from
    its end with ``XREAD`` (no consumer group, nothing to clean up).

    Args:
        client: The Redis client.
        namespace: The namespace.
        feed_enabled: Whether the feed is on (``A2A_SCALE_REDIS_FEED_MAXLEN``).
        block_ms: How long one ``XREAD`` blocks.
    """

    feed_source = 'the Redis event feed'

    def __init__(
        self,
        client: AnyRedis,
        namespace: str,
        *,
        feed_enabled: bool = True,
        block_ms: int = 1_000,
    ) -> None:
        super().__init__('redis', namespace)
        self._client = client
        self.keys = KeySpace(namespace)
        self._feed_enabled = feed_enabled
        self._block_ms = block_ms

    async def all_tasks(self) -> list[OperatorTask]:
        """Every stored task of the namespace (scans its keys)."""
        found: list[OperatorTask] = []
        batch: list[bytes] = []
        scan: Any = self._client.scan_iter(
            match=task_pattern(self.namespace), count=_SCAN_COUNT
        )
        async for key in scan:
            batch.append(key)
            if len(batch) >= _BATCH:
                found += await self._read(batch)
                batch = []
        return found + await self._read(batch)

    async def find_task(self, task_id: str) -> OperatorTask | None:
        """The task with `task_id`, whoever owns it, or `None`."""
        found = await self._read([self.keys.task(task_id).task.encode()])
        return found[0] if found else None

    async def _read(self, keys: list[bytes]) -> list[OperatorTask]:
        if not keys:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, 'd', 'v', 'o')
            replies: Any = await pipe.execute(raise_on_error=False)
        found = []
        for key, reply in zip(keys, replies, strict=True):
            if isinstance(reply, Exception) or reply[0] is None or reply[2] is None:
                continue  # deleted meanwhile, or not a task hash
            task = decode_task(reply[0], key=key.decode())
            found.append(OperatorTask(task, reply[2].decode(), int(reply[1] or 0)))
        return found

    async def heartbeats(self) -> dict[str, float]:
        """Each registered replica's last heartbeat (the registry's scores)."""
        members: Any = await self._client.zrange(
            self.keys.instances, 0, -1, withscores=True
        )
        return {m.decode(): float(score) for m, score in members}

    async def events(self) -> AsyncIterator[FeedEvent]:
        """Yields every event appended to the feed from now on.

        Raises:
            UnsupportedOperationError: If the feed is disabled.
        """
        if not self._feed_enabled:
            raise UnsupportedOperationError(
                'The Redis event feed is disabled (A2A_SCALE_REDIS_FEED_MAXLEN=0): '
                'there is nothing to follow'
            )
        after = '$'
        while True:
            reply: Any = await self._client.xread(
                {self.keys.feed: after}, count=100, block=self._block_ms
            )
            for _, entries in reply or []:
                for raw_id, fields in entries:
                    after = raw_id.decode()
                    event = self._entry(after, fields)
                    if event is not None:
                        yield event

    def _entry(self, entry_id: str, fields: dict[bytes, bytes]) -> FeedEvent | None:
        try:
            task_id = decode_id(fields[b't'].decode())
            version = int(fields[b'v'])
            data = fields[b'e']
        except (KeyError, ValueError, UnicodeDecodeError):
            return None  # malformed: consumers of the feed log it
        return FeedEvent(
            task_id,
            version,
            decode_event(data, key=f'{self.keys.feed}#{entry_id}'),
            int(entry_id.partition('-')[0]) / 1000,
        )
