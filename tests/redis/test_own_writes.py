"""A replica's own saves feed its local readers without reading the log back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from a2a.server.cluster import TaskVersion, VersionedEvent
from a2a.types.a2a_pb2 import (
    Message,
    Part,
    Role,
    TaskState,
    TaskStatusUpdateEvent,
)
from pydantic import SecretStr
from redis.asyncio import Redis

from a2a_scale import ScaleSettings
from a2a_scale.testing import make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.settings import RedisSettings

pytestmark = pytest.mark.redis

ALICE = user_context('alice')
WORKING = TaskState.TASK_STATE_WORKING
BIG = 8 * 1024
"""Bytes of metadata per event: more than a wake-up carries (4 KB by default)."""


def backend_for(url: str, namespace: str) -> RedisBackend:
    return RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=SecretStr(url)),
    )


def count_calls(
    monkeypatch: pytest.MonkeyPatch, client: Any, command: str
) -> list[tuple[Any, ...]]:
    """Records every call of `command` on `client` (one replica's client)."""
    calls: list[tuple[Any, ...]] = []
    original: Callable[..., Awaitable[Any]] = getattr(client, command)

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await original(*args, **kwargs)

    monkeypatch.setattr(client, command, counting)
    return calls


class Writer:
    """Saves status updates of one task through one or more replicas."""

    def __init__(self, task_id: str) -> None:
        self.task = make_task(task_id, state=WORKING)
        self.version = TaskVersion.MISSING

    async def save(self, backend: RedisBackend, size: int = 0) -> int:
        task = self.task
        event = TaskStatusUpdateEvent(
            task_id=task.id, context_id=task.context_id, status=task.status
        )
        event.metadata['blob'] = 'x' * size
        self.version = await backend.task_store.save(
            task, event=event, prev=None, prev_version=self.version, context=ALICE
        )
        await backend.event_stream.publish(task.id, VersionedEvent(event, self.version))
        return int(self.version._value)


async def follow(
    backend: RedisBackend, task_id: str, after: int, until: int, got: list[int]
) -> None:
    async for item in backend.event_stream.subscribe(task_id, after=TaskVersion(after)):
        got.append(int(item.version._value))
        if got[-1] >= until:
            return


async def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_own_big_events_reach_local_readers_without_reading_the_log(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber and a cancel watch on the running replica read nothing back."""
    async with backend_for(redis_url, namespace) as a:
        writer = Writer('own')
        first = await writer.save(a)
        total = first + 1 + 50
        subscriber: list[int] = []
        cancel_watch: list[int] = []
        readers = [
            asyncio.create_task(follow(a, 'own', first, total, subscriber)),
            asyncio.create_task(follow(a, 'own', first, total, cancel_watch)),
        ]
        await wait_for(lambda: a.event_stream.subscription_count == 2)
        await writer.save(a)  # both readers are placed once they have it
        await wait_for(lambda: len(subscriber) == len(cancel_watch) == 1)
        xrange = count_calls(monkeypatch, a.client, 'xrange')
        for _ in range(50):
            await writer.save(a, BIG)
        await asyncio.wait_for(asyncio.gather(*readers), 10)
        expected = list(range(first + 1, total + 1))
        assert subscriber == expected
        assert cancel_watch == expected
        assert xrange == []


@pytest.mark.asyncio
async def test_own_and_remote_saves_interleaved_arrive_in_order_once(
    redis_url: str, namespace: str, raw: Redis
) -> None:
    """Entries written here and by another replica, alternately, big and small."""
    a, b = backend_for(redis_url, namespace), backend_for(redis_url, namespace)
    async with a, b:
        writer = Writer('mixed')
        first = await writer.save(a)
        total = first + 200
        got: list[list[int]] = [[], [], []]
        readers = [
            asyncio.create_task(follow(a, 'mixed', first, total, got[0])),
            asyncio.create_task(follow(a, 'mixed', first, total, got[1])),
            asyncio.create_task(follow(b, 'mixed', first, total, got[2])),
        ]
        await wait_for(
            lambda: (
                a.event_stream.subscription_count == 2
                and b.event_stream.subscription_count == 1
            )
        )
        for i in range(200):
            await writer.save(a if i % 3 else b, BIG if i % 2 else 10)
        await asyncio.wait_for(asyncio.gather(*readers), 20)
        expected = list(range(first + 1, total + 1))
        assert got == [expected, expected, expected]
        assert await raw.xlen(a.task_store.keys.task('mixed').events) == total


@pytest.mark.asyncio
async def test_messages_published_between_own_saves_are_never_skipped(
    redis_url: str, namespace: str
) -> None:
    """A message logged right before this replica's save still comes first.

    The save's reply can arrive before the message's wake-up: its entry then
    follows the last entry handed over by version, but not in the log.
    """
    a, b = backend_for(redis_url, namespace), backend_for(redis_url, namespace)
    async with a, b:
        writer = Writer('msgs')
        first = await writer.save(a)
        rounds = 60
        got: list[str] = []

        async def follow_all() -> None:
            stream = a.event_stream.subscribe('msgs', after=TaskVersion(first))
            async for item in stream:
                event = item.event
                got.append(
                    event.message_id
                    if isinstance(event, Message)
                    else f'v{int(item.version._value)}'
                )
                if len(got) == 2 * rounds:
                    return

        reader = asyncio.create_task(follow_all())
        await wait_for(lambda: a.event_stream.subscription_count == 1)
        expected: list[str] = []
        for i in range(rounds):
            expected.append(f'v{await writer.save(a, BIG)}')
            message = Message(
                message_id=f'm{i}',
                role=Role.ROLE_AGENT,
                parts=[Part(text='y' * (BIG if i % 2 else 10))],
            )
            await (b if i % 3 else a).event_stream.publish(
                'msgs', VersionedEvent(message, writer.version)
            )
            expected.append(f'm{i}')
        await asyncio.wait([reader], timeout=10)
        assert got == expected


@pytest.mark.asyncio
async def test_a_save_that_hangs_here_holds_back_no_other_replicas_events(
    redis_url: str, namespace: str
) -> None:
    """Wake-ups wait for this replica's save in flight only briefly."""
    a, b = backend_for(redis_url, namespace), backend_for(redis_url, namespace)
    async with a, b:
        writer = Writer('stuck')
        first = await writer.save(b)
        got: list[int] = []
        reader = asyncio.create_task(follow(a, 'stuck', first, first + 20, got))
        await wait_for(lambda: a.event_stream.subscription_count == 1)
        token = a.event_stream.saving('stuck')  # a save that never returns
        assert token is not None
        try:
            for _ in range(20):
                await writer.save(b, BIG)
            await asyncio.wait_for(reader, 5)
        finally:
            a.event_stream.saved(token, None)
        assert got == list(range(first + 1, first + 21))
