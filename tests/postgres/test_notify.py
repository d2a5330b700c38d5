"""Notifications after the commit: events carried inline, the re-check net."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from a2a.server.cluster import TaskVersion, VersionedEvent

from a2a_scale import ScaleSettings
from a2a_scale.testing import TaskWriter, make_task, user_context
from a2a_scale_postgres.backend import PostgresBackend
from a2a_scale_postgres.notify import PostgresNotifier, format_notice, parse_notice
from a2a_scale_postgres.schema import task_key
from a2a_scale_postgres.settings import PostgresSettings

pytestmark = pytest.mark.postgres

ALICE = user_context('alice')


def _backend(dsn: str, schema: str, **options: Any) -> PostgresBackend:
    return PostgresBackend(
        ScaleSettings(namespace='pg', backend='postgres'),
        PostgresSettings(
            dsn=dsn, schema_name=schema, create_schema=True, backoff_cap=0.2, **options
        ),
    )


async def _collect(
    backend: PostgresBackend, task_id: str, count: int, out: list[VersionedEvent]
) -> None:
    async for event in backend.event_stream.subscribe(
        task_id, after=TaskVersion.MISSING
    ):
        out.append(event)
        if len(out) == count:
            return


async def _wait_for(got: list[VersionedEvent], count: int, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while len(got) < count:  # noqa: ASYNC110 - a list filled by a consumer
            await asyncio.sleep(0.01)


class _ReadCounter:
    """Counts the reads a backend's pool runs (all reads go through it)."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.reads = 0
        for name in ('fetch', 'fetchrow', 'fetchval'):
            original = getattr(backend.pool, name)
            setattr(backend.pool, name, self._counting(original))

    def _counting(self, original: Any) -> Any:
        async def counted(*args: Any) -> Any:
            self.reads += 1
            return await original(*args)

        return counted


def test_notice_carries_small_events_only() -> None:
    small = format_notice('t-1', 7, 3, b'\x00event', limit=6)
    assert parse_notice(small) == parse_notice(f'{task_key("t-1")}:7:3:AGV2ZW50')
    notice = parse_notice(small)
    assert notice is not None
    assert (notice.position, notice.version, notice.data) == (7, 3, b'\x00event')
    large = parse_notice(format_notice('t-1', 8, 4, b'\x00events', limit=6))
    assert large is not None
    assert (large.position, large.version, large.data) == (8, None, None)
    for bad in ('', 'k', 'k:x', 'k:1:2', 'k:1:2:***', 'k:1:x:AA=='):
        assert parse_notice(bad) is None, bad


@pytest.mark.asyncio
@pytest.mark.parametrize(('limit', 'carried'), [(2_000, True), (0, False)])
async def test_small_events_reach_other_replicas_without_a_read(
    postgres_dsn: str, schema: str, limit: int, carried: bool
) -> None:
    # The limit is the sender's: the writer decides what a notification carries.
    writer_backend = _backend(postgres_dsn, schema, notify_payload_limit=limit)
    reader = _backend(postgres_dsn, schema, recheck_interval=60)
    async with writer_backend, reader:
        writer = TaskWriter(writer_backend.task_store, ALICE, make_task())
        await writer.create()
        got: list[VersionedEvent] = []
        consumer = asyncio.create_task(_collect(reader, writer.task_id, 21, got))
        await _wait_for(got, 1, 10)
        # Let the create's notification (sent after its commit) settle first.
        await writer_backend.notifier.flush()
        await asyncio.sleep(0.3)
        counter = _ReadCounter(reader)
        for i in range(20):
            await writer.add_artifact(f'part {i}')
        await _wait_for(got, 21, 10)
        await consumer
    assert [e.version for e in got] == [TaskVersion(v) for v in range(1, 22)]
    if carried:
        assert counter.reads == 0
    else:
        assert counter.reads > 0


@pytest.fixture
def lost_notifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Saves commit but their replica 'dies' before sending the notification."""
    dropped: list[str] = []

    def die_before_notifying(self: PostgresNotifier, payload: str) -> None:
        del self
        dropped.append(payload)

    monkeypatch.setattr(PostgresNotifier, 'send', die_before_notifying)
    return dropped


@pytest.mark.asyncio
async def test_event_whose_notification_was_lost_arrives_at_the_recheck(
    postgres_dsn: str, schema: str, lost_notifications: list[str]
) -> None:
    writer_backend = _backend(postgres_dsn, schema)
    reader = _backend(postgres_dsn, schema, recheck_interval=0.3)
    async with writer_backend, reader:
        writer = TaskWriter(writer_backend.task_store, ALICE, make_task())
        got: list[VersionedEvent] = []
        consumer = asyncio.create_task(_collect(reader, writer.task_id, 3, got))
        await asyncio.sleep(0.1)
        await writer.create()
        await _wait_for(got, 1, 10)
        await writer.add_artifact('one')
        await writer.add_artifact('two')
        await _wait_for(got, 3, 5)
        await consumer
        assert len(lost_notifications) == 3
        assert await reader.event_stream.recheck() == 0
    assert [e.version for e in got] == [TaskVersion(v) for v in (1, 2, 3)]


@pytest.mark.asyncio
async def test_subscribers_of_a_task_share_one_decoded_event(
    postgres_dsn: str, schema: str
) -> None:
    writer_backend = _backend(postgres_dsn, schema)
    reader = _backend(postgres_dsn, schema)
    async with writer_backend, reader:
        writer = TaskWriter(writer_backend.task_store, ALICE, make_task())
        await writer.create()
        first: list[VersionedEvent] = []
        second: list[VersionedEvent] = []
        consumers = [
            asyncio.create_task(_collect(reader, writer.task_id, 6, got))
            for got in (first, second)
        ]
        await _wait_for(first, 1, 10)
        await _wait_for(second, 1, 10)
        for i in range(5):
            await writer.add_artifact(f'part {i}')
        await asyncio.gather(*consumers)
    assert [e.version for e in first] == [e.version for e in second]
    # Decoded once per replica, not once per subscriber.
    assert all(a.event is b.event for a, b in zip(first, second, strict=True))


@pytest.mark.asyncio
async def test_concurrent_saves_share_notifying_transactions(
    postgres_dsn: str, schema: str
) -> None:
    writer_backend = _backend(postgres_dsn, schema)
    reader = _backend(postgres_dsn, schema)
    async with writer_backend, reader:
        writers = [
            TaskWriter(writer_backend.task_store, ALICE, make_task()) for _ in range(20)
        ]
        await asyncio.gather(*(w.create() for w in writers))
        got: dict[str, list[VersionedEvent]] = {w.task_id: [] for w in writers}
        consumers = [
            asyncio.create_task(_collect(reader, w.task_id, 4, got[w.task_id]))
            for w in writers
        ]
        for w in writers:
            await _wait_for(got[w.task_id], 1, 10)
        before = writer_backend.notifier.batches
        for i in range(3):
            await asyncio.gather(*(w.add_artifact(f'part {i}') for w in writers))
        async with asyncio.timeout(10):
            await asyncio.gather(*consumers)
        await writer_backend.notifier.flush()
        sent = writer_backend.notifier.batches - before
    # 60 notifications, in fewer transactions than saves.
    assert 0 < sent < 60
    for w in writers:
        assert [e.version for e in got[w.task_id]] == [
            TaskVersion(v) for v in range(1, 5)
        ]


@pytest.mark.asyncio
async def test_notification_whose_sends_fail_a_while_still_arrives_soon(
    postgres_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing send is retried with backoff, not left to the re-check."""
    from a2a_scale_postgres import notify

    failures = {'left': 0}
    original = notify.send_notices

    async def flaky(conn: Any, channel: str, payloads: list[str]) -> None:
        if failures['left'] > 0:
            failures['left'] -= 1
            raise ConnectionError('injected')
        await original(conn, channel, payloads)

    monkeypatch.setattr(notify, 'send_notices', flaky)
    writer_backend = _backend(postgres_dsn, schema)
    reader = _backend(postgres_dsn, schema, recheck_interval=60)
    async with writer_backend, reader:
        writer = TaskWriter(writer_backend.task_store, ALICE, make_task())
        got: list[VersionedEvent] = []
        consumer = asyncio.create_task(_collect(reader, writer.task_id, 2, got))
        await writer.create()
        await _wait_for(got, 1, 10)
        failures['left'] = 5
        await writer.add_artifact('one')
        await _wait_for(got, 2, 5)
        await consumer
    assert failures['left'] == 0
    assert [e.version for e in got] == [TaskVersion(1), TaskVersion(2)]
