"""Notifications of new events, sent right after the save's commit.

A save commits durably without notifying; the replica then sends the
notification in a tiny transaction of its own with ``synchronous_commit =
off``, together with the other notifications queued meanwhile.
A notification in the save's transaction would take PostgreSQL's
database-wide notification lock until the commit record is flushed, so
every concurrent save would wait for its own disk flush in turn instead of
sharing one. Sending it after the commit keeps "notified only if
committed"; a notification lost to a crash between the two only costs
latency, because every replica re-checks the positions of the tasks it
watches every few seconds.

The payload is ``<task key>:<position>``; when the event is small it also
carries ``:<version>:<event in base64>``, so the subscribers' replica needs
no read. Larger events stay in the table (NOTIFY payloads are limited to
8,000 bytes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from a2a_scale import telemetry
from a2a_scale_postgres.schema import task_key

if TYPE_CHECKING:
    import asyncpg

    from a2a_scale_postgres.connection import PoolHandle

logger = logging.getLogger(__name__)

_CHANNEL = re.compile(r'^[a-z0-9_]{1,63}$')
_RETRY_FOR = 5.0
"""Seconds a failing batch is retried (a duplicate notification is harmless,
a lost one late); past that the replicas' re-check picks the events up."""
_BACKOFF_CAP = 0.5


@dataclass(frozen=True)
class Notice:
    """One parsed notification: a task's new position, maybe with its event."""

    key: str
    position: int
    version: int | None = None
    data: bytes | None = None


def format_notice(
    task_id: str, position: int, version: int, data: bytes | None, limit: int
) -> str:
    """The payload announcing `position` of `task_id`'s log.

    Args:
        task_id: The task.
        position: The event's position in the task's log.
        version: The task version the event belongs to.
        data: The serialized event, carried if at most `limit` bytes.
        limit: Largest event carried in the payload (0: never).
    """
    head = f'{task_key(task_id)}:{position}'
    if data is None or len(data) > limit:
        return head
    return f'{head}:{version}:{base64.b64encode(data).decode()}'


def parse_notice(payload: str) -> Notice | None:
    """The notice in `payload`, or `None` if it is malformed."""
    parts = payload.split(':')
    try:
        if len(parts) == 2:
            return Notice(parts[0], int(parts[1]))
        if len(parts) == 4:
            data = base64.b64decode(parts[3], validate=True)
            return Notice(parts[0], int(parts[1]), int(parts[2]), data)
    except (ValueError, binascii.Error):
        return None
    return None


async def send_notices(
    conn: asyncpg.Connection, channel: str, payloads: list[str]
) -> None:
    """Sends `payloads` on `channel` in one transaction, without a flush wait.

    Raises:
        Exception: Whatever the connection raised; a transaction left open
            is rolled back (or the connection closed).
    """
    if not _CHANNEL.match(channel) or any("'" in p for p in payloads):
        raise ValueError(f'unsafe NOTIFY channel or payload on {channel!r}')
    # One round trip (simple query protocol): the literals are a plain
    # identifier and hex, digits and base64 characters only.
    calls = ', '.join(f"pg_notify('{channel}', '{p}')" for p in payloads)
    try:
        await conn.execute(
            f'BEGIN; SET LOCAL synchronous_commit = off; SELECT {calls}; COMMIT'
        )
    except Exception:
        if not conn.is_closed() and conn.is_in_transaction():
            try:
                await conn.execute('ROLLBACK')
            except Exception:
                conn.terminate()
        raise


class PostgresNotifier:
    """Sends a replica's notifications in batches, one transaction each.

    A save hands its notification over right after its commit and returns;
    one sender sends everything queued meanwhile in a single transaction
    (so under load, many saves share one notifying commit and its
    server-wide lock), in the order the saves committed on this replica.

    Args:
        pool: Where the sender borrows a connection for each batch.
        channel: The namespace's channel.
        batch_bytes: Most payload bytes in one transaction.
    """

    def __init__(
        self, pool: PoolHandle, channel: str, *, batch_bytes: int = 256_000
    ) -> None:
        self._pool = pool
        self.channel = channel
        self._batch_bytes = batch_bytes
        self._queue: deque[str] = deque()
        self._sender: asyncio.Task[None] | None = None
        self.batches = 0
        """How many transactions sent notifications (for tests and stats)."""

    def send(self, payload: str) -> None:
        """Queues `payload`; sends it as soon as the previous batch is out."""
        self._queue.append(payload)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(
                self._run(), name='a2a-scale-postgres-notify'
            )

    async def flush(self) -> None:
        """Waits until everything queued so far was sent (or dropped)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def _run(self) -> None:
        while self._queue:
            batch: list[str] = []
            size = 0
            while self._queue and (not batch or size < self._batch_bytes):
                payload = self._queue.popleft()
                batch.append(payload)
                size += len(payload) + 32
            loop = asyncio.get_running_loop()
            give_up = loop.time() + _RETRY_FOR
            delay = 0.02
            while True:
                try:
                    async with self._pool.acquire() as conn:
                        await send_notices(conn, self.channel, batch)
                    break
                except Exception as e:
                    if loop.time() + delay > give_up:
                        logger.warning(
                            'Notifying replicas of %d saved event(s) failed '
                            '(%s); they pick them up at their next re-check',
                            len(batch),
                            type(e).__name__,
                        )
                        break
                    telemetry.count_retry('postgres', 'notify')
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _BACKOFF_CAP)
            self.batches += 1
