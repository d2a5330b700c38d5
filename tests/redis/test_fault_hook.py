"""What `inject_faults` does to pipelines and to the hub's Pub/Sub connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from a2a_scale.testing import Fault
from a2a_scale_redis.testing import inject_faults

pytestmark = pytest.mark.redis


class OneFault:
    """Fails one call named `call` (after `skip` others), as `kind` and `before` say."""

    def __init__(self, call: str, kind: str, before: bool, *, skip: int = 0) -> None:
        self.fault: Fault | None = Fault(kind=kind, before=before, call=call)  # type: ignore[arg-type]
        self.skip = skip

    def next_fault(self, call: str) -> Fault | None:
        if self.fault is None or call != self.fault.call:
            return None
        if self.skip:
            self.skip -= 1
            return None
        fault, self.fault = self.fault, None
        return fault


@pytest_asyncio.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def run_pipeline(
    client: Redis, plan: OneFault, *, transaction: bool = False
) -> tuple[Any, list[Any]]:
    """Sets three keys in one pipeline under `plan`; returns the outcome and keys."""
    inject_faults(SimpleNamespace(client=client), plan, commands=False, pipelines=True)
    keys = [f'fault-hook:{uuid.uuid4().hex}:{i}' for i in range(3)]
    pipe = client.pipeline(transaction=transaction)
    for key in keys:
        pipe.set(key, b'x', ex=60)
    try:
        outcome: Any = await pipe.execute(raise_on_error=False)
    except Exception as e:
        outcome = type(e)
    values = [await client.get(key) for key in keys]
    return outcome, values


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ('before', 'ran'), [(True, [b'x', None, None]), (False, [b'x', b'x', None])]
)
async def test_a_connection_fault_inside_a_pipeline_breaks_it_there(
    client: Redis, before: bool, ran: list[bytes | None]
) -> None:
    outcome, values = await run_pipeline(
        client, OneFault('pipeline:SET', 'connection', before, skip=1)
    )
    assert outcome is RedisConnectionError
    # Commands queued after the fault in a transaction-free pipeline never ran.
    assert values == ran


@pytest.mark.asyncio
@pytest.mark.parametrize(('before', 'second'), [(True, None), (False, b'x')])
async def test_a_server_fault_inside_a_pipeline_fails_that_command(
    client: Redis, before: bool, second: bytes | None
) -> None:
    outcome, values = await run_pipeline(
        client, OneFault('pipeline:SET', 'server', before, skip=1)
    )
    assert outcome[0] is True
    assert outcome[2] is True
    assert isinstance(outcome[1], ResponseError)
    assert values == [b'x', second, b'x']


@pytest.mark.asyncio
@pytest.mark.parametrize(('before', 'value'), [(True, None), (False, b'x')])
async def test_a_fault_of_the_whole_pipeline(
    client: Redis, before: bool, value: bytes | None
) -> None:
    outcome, values = await run_pipeline(
        client, OneFault('pipeline', 'connection', before)
    )
    assert outcome is RedisConnectionError
    assert values == [value] * 3


@pytest.mark.asyncio
async def test_a_transaction_fails_as_a_whole(client: Redis) -> None:
    outcome, values = await run_pipeline(
        client, OneFault('pipeline:SET', 'connection', False), transaction=True
    )
    assert outcome is RedisConnectionError
    assert values == [b'x'] * 3


async def subscribed(client: Redis, plan: OneFault, channel: str) -> Any:
    """A hub-like holder of one Pub/Sub connection, faults injected."""
    hub = SimpleNamespace(_factory=lambda: client, _pubsub=None)
    inject_faults(
        SimpleNamespace(client=client, hub=hub), plan, commands=False, pubsub=True
    )
    pubsub = hub._factory().pubsub()
    await pubsub.execute_command('SUBSCRIBE', channel)
    return pubsub


@pytest.mark.asyncio
async def test_a_dropped_pubsub_read_stays_dropped(client: Redis) -> None:
    channel = f'fault-hook:{uuid.uuid4().hex}'
    pubsub = await subscribed(
        client, OneFault('pubsub:read:message', 'connection', True), channel
    )
    try:
        assert (await pubsub.get_message(timeout=2))['type'] == 'subscribe'
        await client.publish(channel, b'lost')
        with pytest.raises(RedisConnectionError):
            await pubsub.get_message(timeout=2)
        # No silent reconnect: the connection is gone for good, as on a kill.
        with pytest.raises(RedisConnectionError):
            await pubsub.get_message(timeout=0.1)
        with pytest.raises(RedisConnectionError):
            await pubsub.execute_command('PING')
    finally:
        await pubsub.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize('before', [True, False])
async def test_a_server_fault_on_subscribe_comes_back_as_the_reply(
    client: Redis, before: bool
) -> None:
    other = f'fault-hook:{uuid.uuid4().hex}'
    pubsub = await subscribed(
        client, OneFault('pubsub:SUBSCRIBE', 'server', before, skip=1), other
    )
    try:
        assert (await pubsub.get_message(timeout=2))['type'] == 'subscribe'
        # A message already on its way comes first, untouched; then one
        # error reply in place of the command's, and nothing else of it (no
        # reply of a stand-in PING, no confirmation), as from Redis: a hub
        # counting replies would otherwise lose its place.
        assert await client.publish(other, b'first') == 1
        await pubsub.execute_command('SUBSCRIBE', f'fault-hook:{uuid.uuid4().hex}')
        message = await pubsub.get_message(timeout=2)
        assert message is not None
        assert (message['type'], message['data']) == ('message', b'first')
        async with asyncio.timeout(2):  # the error reply arrives at once
            with pytest.raises(ResponseError):
                await pubsub.get_message(timeout=2)
        assert await pubsub.get_message(timeout=0.2) is None
    finally:
        await pubsub.aclose()
