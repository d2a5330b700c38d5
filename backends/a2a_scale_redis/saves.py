"""What a Redis save leaves beside the task.

- `SaveHook`: told of each save of an event and of the entry it logged;
- `ClusterFollowUp`: on a Redis Cluster, the owner's list index, the sweep
  registry and the event feed live in other slots than the task, so they
  are updated right after each save, by a version-guarded and idempotent
  script and one pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from a2a_scale_redis.feed import FeedAppender
from a2a_scale_redis.indexes import INDEX_PUT

if TYPE_CHECKING:
    from a2a_scale_redis.connection import AnyRedis
    from a2a_scale_redis.keys import KeySpace

logger = logging.getLogger(__name__)


class SaveHook(Protocol):
    """Told of this replica's saves of an event, and of what each logged."""

    def saving(self, task_id: str) -> Any:
        """A save of `task_id` starts; returns a token (`None`: not told)."""

    def saved(self, token: Any, logged: tuple[bytes, int, bytes] | None) -> None:
        """The save ended: its entry id, version and event, or `None`."""


class ClusterFollowUp:
    """Updates a saved task's index entry, sweep registry and feed on a Cluster.

    Args:
        client: The store's `RedisCluster` client.
        keys: The store's key space.
        feed_maxlen: Approximate length of the feed (0: no feed).
        retention_ms: Expiry of the feed.
    """

    def __init__(
        self, client: AnyRedis, keys: KeySpace, *, feed_maxlen: int, retention_ms: int
    ) -> None:
        self._client = client
        self._keys = keys
        self._feed_maxlen = feed_maxlen
        self._retention_ms = retention_ms
        self._feed = FeedAppender(
            client, keys.feed, maxlen=feed_maxlen, retention_ms=retention_ms
        )
        self._index_put = client.register_script(INDEX_PUT)

    async def run(  # noqa: PLR0917
        self,
        prefix: str,
        tid: str,
        version: int,
        entry: tuple[int, str, str],
        deadline: int | None,
        owner: str,
        event: bytes,
    ) -> None:
        """Updates the index, the sweep registry and the feed (other slots).

        The calls go out together: the index script and one pipeline.
        """
        calls = []
        if deadline is not None:
            state, ctx, member = entry
            calls.append(
                self._index_put(
                    keys=[f'{prefix}:all'],
                    args=[prefix, tid, version, state, ctx, member, deadline, ''],
                )
            )
        pipe = self._client.pipeline(transaction=False)
        if deadline:
            pipe.zadd(self._keys.sweep, {prefix: deadline}, lt=True)
        feed_in_pipe = bool(event and self._feed_maxlen and not self._feed.pending)
        if feed_in_pipe:
            pipe.xadd(
                self._keys.feed,
                {'t': tid, 'v': version, 'o': owner, 'e': event},
                maxlen=self._feed_maxlen,
                approximate=True,
            )
            pipe.pexpire(self._keys.feed, self._retention_ms)
        if len(pipe):
            calls.append(pipe.execute())
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if event and self._feed_maxlen and (failed or not feed_in_pipe):
            # At least once: retried (after any backlog), a repeat is harmless.
            await self._feed.append({'t': tid, 'v': version, 'o': owner, 'e': event})
        if failed:
            # The task is saved; its next save rewrites its index entry.
            logger.warning(
                'Saved task %s but could not update its index or the feed: %r',
                tid[:64],
                failed[0],
            )
