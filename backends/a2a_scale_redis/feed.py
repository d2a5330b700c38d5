"""`RedisEventFeed`: every task event of a namespace, for consumer groups."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from a2a_scale.codec import decode_event
from a2a_scale_redis.keys import KeySpace, decode_id

if TYPE_CHECKING:
    from a2a.server.events.event_queue import Event

    from a2a_scale_redis.connection import AnyRedis

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedEntry:
    """One event of the feed."""

    entry_id: str
    task_id: str
    version: int
    owner: str
    data: bytes
    key: str

    def event(self) -> Event:
        """Decodes the event (raises `CorruptDataError` naming the entry)."""
        return decode_event(self.data, key=f'{self.key}#{self.entry_id}')


class RedisEventFeed:
    """Reads the namespace's event feed as one consumer of a consumer group.

    Every saved event is appended to the feed (``{<ns>:feed}``, trimmed to
    ``feed_maxlen``). Consumers sharing a group split the events between
    them (load-balanced); give each replica its own group to have every
    replica see every event (per-instance). Entries a consumer read but never
    acknowledged are reclaimed by another consumer of the group once they
    have been pending for ``claim_idle_ms`` (``XAUTOCLAIM``), so a dead
    consumer loses nothing. Delivery is at least once: ``(task_id, version)``
    identifies an event.
    """

    def __init__(
        self,
        client: AnyRedis,
        *,
        namespace: str,
        group: str,
        consumer: str,
        block_ms: int = 2_000,
        claim_idle_ms: int = 30_000,
        batch: int = 100,
    ) -> None:
        self._client = client
        self.key = KeySpace(namespace).feed
        self.group = group
        self.consumer = consumer
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._batch = batch
        self._claim_from = '0-0'

    async def ensure_group(self, *, from_start: bool = False) -> None:
        """Creates the group if absent, reading new events (or all of them)."""
        try:
            await self._client.xgroup_create(
                self.key, self.group, id='0' if from_start else '$', mkstream=True
            )
        except ResponseError as e:
            if 'BUSYGROUP' not in str(e):
                raise

    async def read(self) -> list[FeedEntry]:
        """Returns the next entries: reclaimed ones first, then new ones."""
        try:
            claimed: Any = await self._client.xautoclaim(
                self.key,
                self.group,
                self.consumer,
                self._claim_idle_ms,
                start_id=self._claim_from,
                count=self._batch,
            )
            self._claim_from = claimed[0].decode() if claimed[0] else '0-0'
            entries = await self._entries(claimed[1])
            if entries:
                return entries
            reply: Any = await self._client.xreadgroup(
                self.group,
                self.consumer,
                {self.key: '>'},
                count=self._batch,
                block=self._block_ms,
            )
        except ResponseError as e:
            if 'NOGROUP' not in str(e):
                raise
            # The feed expired while idle (retention): start it again.
            await self.ensure_group(from_start=True)
            return []
        return await self._entries([item for _, items in reply or [] for item in items])

    async def ack(self, *entries: FeedEntry) -> None:
        """Acknowledges handled entries."""
        if entries:
            await self._client.xack(
                self.key, self.group, *(e.entry_id for e in entries)
            )

    async def __aiter__(self) -> AsyncIterator[FeedEntry]:
        """Yields entries forever; acknowledge each with `ack`."""
        while True:
            for entry in await self.read():
                yield entry

    async def leave(self) -> None:
        """Removes this consumer from the group (its pending entries move on)."""
        await self._client.xgroup_delconsumer(self.key, self.group, self.consumer)

    async def destroy_group(self) -> None:
        """Deletes the group (per-instance groups of a stopped replica)."""
        await self._client.xgroup_destroy(self.key, self.group)

    async def _entries(
        self, items: list[tuple[bytes, dict[bytes, bytes] | None]]
    ) -> list[FeedEntry]:
        """Parses read entries; acknowledges and logs malformed ones.

        A malformed entry can never be handled, so it is acknowledged rather
        than reclaimed forever; the log names it for the operator (never its
        body).
        """
        entries, bad = [], []
        for raw_id, fields in items:
            if not fields:
                continue  # deleted by trimming while pending
            try:
                entries.append(
                    FeedEntry(
                        entry_id=raw_id.decode(),
                        task_id=decode_id(fields[b't'].decode()),
                        version=int(fields[b'v']),
                        owner=fields[b'o'].decode(),
                        data=fields[b'e'],
                        key=self.key,
                    )
                )
            except (KeyError, ValueError, UnicodeDecodeError):
                bad.append(raw_id)
        if bad:
            logger.error(
                'Acknowledged %d malformed entries of the event feed %s: %s',
                len(bad),
                self.key,
                ', '.join(i.decode() for i in bad[:10]),
            )
            await self._client.xack(self.key, self.group, *bad)
        return entries


class FeedAppender:
    """Appends saved events to the feed at least once, after their save.

    On a Redis Cluster the feed lives in another slot than the task, so the
    save script cannot append to it. An append that fails is retried with
    backoff; one still failing stays in a bounded backlog that the next
    append writes first (so the feed keeps each task's order), and dropping
    from a full backlog is logged. ``(task_id, version)`` identifies an
    event: consumers ignore a repeated one.
    """

    def __init__(
        self,
        client: AnyRedis,
        key: str,
        *,
        maxlen: int,
        retention_ms: int,
        attempts: int = 3,
        backlog: int = 10_000,
    ) -> None:
        self._client = client
        self._key = key
        self._maxlen = maxlen
        self._retention_ms = retention_ms
        self._attempts = attempts
        self._backlog: deque[dict[Any, Any]] = deque()
        self._limit = backlog
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        """How many events wait for a retry."""
        return len(self._backlog)

    async def append(self, fields: dict[Any, Any]) -> None:
        """Queues one entry's fields and writes every queued entry."""
        if len(self._backlog) >= self._limit:
            lost = self._backlog.popleft()
            logger.error(
                'The event feed %s backlog is full (%d): dropped the event of '
                'task %s version %s',
                self._key,
                self._limit,
                str(lost.get('t', ''))[:64],
                lost.get('v'),
            )
        self._backlog.append(fields)
        await self.flush()

    async def flush(self) -> None:
        """Writes the queued entries, retrying; what still fails stays queued."""
        async with self._lock:
            error: Exception | None = None
            for attempt in range(self._attempts):
                try:
                    while self._backlog:
                        await self._client.xadd(
                            self._key,
                            self._backlog[0],
                            maxlen=self._maxlen,
                            approximate=True,
                        )
                        self._backlog.popleft()
                    await self._client.pexpire(self._key, self._retention_ms)
                    return
                except Exception as e:  # retried, then kept for the next save
                    error = e
                    await asyncio.sleep(0.05 * 2**attempt)
            logger.warning(
                'Could not append %d event(s) to the feed %s (%r); they are '
                'retried with the next save',
                len(self._backlog),
                self._key,
                error,
            )


async def sweep_feed(
    client: AnyRedis, *, namespace: str, dead: str, live: set[str], idle_ms: int
) -> None:
    """Releases what replica `dead`, and idle consumers gone with it, left on the feed.

    A group named exactly after `dead` (a per-instance group) is destroyed.
    In every other group, consumers that are not live replicas and have
    been idle for `idle_ms` are deleted once they hold no pending entry;
    entries still pending stay for another consumer to reclaim (deleting
    their consumer would drop them).

    Args:
        client: The Redis client.
        namespace: The namespace whose feed is swept.
        dead: The id of the replica being reaped.
        live: The ids of the replicas still registered.
        idle_ms: How long a consumer must have been idle to be deleted.
    """
    key = KeySpace(namespace).feed
    try:
        groups: Any = await client.xinfo_groups(key)
    except ResponseError as e:
        if 'no such key' in str(e).lower():
            return
        raise
    for group in groups:
        name = _text(group['name'])
        if name == dead:
            await client.xgroup_destroy(key, name)
            continue
        consumers: Any = await client.xinfo_consumers(key, name)
        for consumer in consumers:
            consumer_name = _text(consumer['name'])
            if (
                consumer_name not in live
                and int(consumer['pending']) == 0
                and int(consumer['idle']) >= idle_ms
            ):
                await client.xgroup_delconsumer(key, name, consumer_name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
