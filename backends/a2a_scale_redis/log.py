"""`EventLogReader`: reads a task's event log (its Redis stream) after an entry."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from a2a_scale import EventGapError, telemetry
from a2a_scale_redis.errors import RedisWrongTypeError, wrong_type_as_error
from a2a_scale_redis.window import Entry, EntryId, follows, format_id, parse_id

if TYPE_CHECKING:
    from a2a_scale_redis.connection import AnyRedis
    from a2a_scale_redis.keys import TaskKeys

logger = logging.getLogger(__name__)

PAGE = 500
"""Entries per ``XRANGE``."""
CORRUPT = 'an entry of its event log is corrupt'
TRIMMED = 'the subscriber fell behind the retained event log (it was trimmed)'


def backoff(failures: int) -> float:
    """Seconds to wait before retrying after `failures` failures in a row."""
    return min(2.0, random.random() * 0.05 * 2 ** min(failures, 10))  # noqa: S311


class EventLogReader:
    """Reads task event logs; reads take turns on a few pooled connections.

    Thousands of subscriptions catching up at once thus do not grow the pool.
    """

    def __init__(self, client: AnyRedis, read_concurrency: int = 2) -> None:
        self._client = client
        self._reads = asyncio.Semaphore(read_concurrency)

    async def newest(self, key: str) -> EntryId:
        """The id of the newest entry of log `key`; ``(0, 0)`` when empty."""
        async with self._reads:
            with wrong_type_as_error(key):
                newest: Any = await self._client.xrevrange(key, count=1)
        return parse_id(newest[0][0]) if newest else (0, 0)

    async def read_after(
        self, task_id: str, keys: TaskKeys, last: EntryId
    ) -> list[Entry]:
        """Reads the whole log after `last` for one subscriber, retrying errors.

        Raises:
            EventGapError: If entries after `last` were trimmed, or the log
                key holds another type.
        """
        failures = 0
        while True:
            try:
                entries = [e async for e in self.pages(keys.events, last)]
                if entries and not follows(last, entries[0][0]):
                    await self.check_trimmed(task_id, keys.events, last)
                return entries
            except (EventGapError, asyncio.CancelledError):
                raise
            except RedisWrongTypeError as e:
                logger.error('Ending a subscription: %s', e)
                raise EventGapError(task_id, position=last[0], reason=CORRUPT) from None
            except Exception as e:  # any failure is retried
                failures += 1
                delay = backoff(failures)
                logger.warning(
                    'Reading %r failed (%s); retrying in %.2f s', keys.events, e, delay
                )
                telemetry.count_retry('redis', 'stream')
                await asyncio.sleep(delay)

    async def check_trimmed(self, task_id: str, key: str, last: EntryId) -> None:
        """Raises `EventGapError` if the log lost entries after `last`.

        Trimming drops the oldest entries: entries after `last` may be lost
        only when some were dropped and the oldest one kept is newer than
        `last` (and not the one right after it).
        """
        async with self._reads:
            with wrong_type_as_error(key):
                info: Any = await self._client.xinfo_stream(key)
        first = info.get('first-entry')
        added = int(info.get('entries-added') or 0)
        if first is None or added <= int(info['length']):
            return
        first_id = parse_id(first[0])
        if first_id > last and not follows(last, first_id):
            raise EventGapError(task_id, position=last[0], reason=TRIMMED)

    async def pages(self, key: str, last: EntryId) -> AsyncGenerator[Entry, None]:
        """Yields the log's entries after `last`, page by page."""
        start = '(' + format_id(last)
        while True:
            async with self._reads:
                with wrong_type_as_error(key):
                    page: Any = await self._client.xrange(
                        key, min=start, max='+', count=PAGE
                    )
            for raw_id, fields in page:
                yield self.entry(raw_id, fields)
            if len(page) < PAGE:
                return
            start = '(' + page[-1][0].decode()

    @staticmethod
    def entry(raw_id: bytes, fields: dict[bytes, bytes]) -> Entry:
        """An entry of the log; its event is `None` when it is malformed."""
        entry_id = parse_id(raw_id)
        try:
            return entry_id, int(fields[b'v']), fields[b'e']
        except (KeyError, ValueError):
            return entry_id, entry_id[0], None
