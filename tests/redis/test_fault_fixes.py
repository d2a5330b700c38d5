"""Defects found with the Redis fault hook (issue 8): hubs and listings."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
import pytest_asyncio
from a2a.types.a2a_pb2 import ListTasksRequest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from a2a_scale import ScaleSettings
from a2a_scale.testing import Fault, TaskWriter, make_task, user_context
from a2a_scale_redis import hub as hub_module
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.hub import RedisWakeupHub
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.sharded import ShardedWakeupHub, node_client
from a2a_scale_redis.testing import RedisCluster3, inject_faults

pytestmark = pytest.mark.redis

ALICE = user_context('alice')


class Armed:
    """Fails the next `count` calls named `call` with `kind` faults."""

    def __init__(self, call: str = '', kind: str = 'connection') -> None:
        self.call = call
        self.kind = kind
        self.count = 0
        self.before = True

    def next_fault(self, call: str) -> Fault | None:
        if call != self.call or not self.count:
            return None
        self.count -= 1
        return Fault(kind=self.kind, before=self.before, call=call)  # type: ignore[arg-type]


@pytest.fixture
def plan() -> Armed:
    """The faults of `plain_hub`'s connections: none until armed."""
    return Armed()


@pytest_asyncio.fixture
async def plain_hub(redis_url: str, plan: Armed) -> AsyncIterator[RedisWakeupHub]:
    hub = RedisWakeupHub(
        lambda: Redis.from_url(redis_url),
        control_channel=f'hubfix:{uuid.uuid4().hex}',
        subscribe_timeout=60.0,
        backoff_base=0.01,
        backoff_cap=0.5,
    )
    # Faults reach the connections opened from now on, from their first read.
    backend = SimpleNamespace(client=None, hub=hub)
    inject_faults(backend, plan, commands=False, pubsub=True)
    await hub.wait_connected(5)
    yield hub
    await hub.close()


async def _reconnected(hub: RedisWakeupHub, connections: int) -> None:
    for _ in range(1000):
        if hub.connections > connections and hub.connected:
            return
        await asyncio.sleep(0.005)
    raise AssertionError('the hub did not reconnect')


@pytest.mark.asyncio
async def test_the_reconnect_after_many_drops_is_as_fast_as_the_first(
    plain_hub: RedisWakeupHub,
    plan: Armed,
    raw: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The jitter at its top: the delay is base * 2**failures, capped.
    monkeypatch.setattr(hub_module.random, 'random', lambda: 1.0)
    plan.call = 'pubsub:read:message'
    channel = f'hubfix:{uuid.uuid4().hex}'
    await plain_hub.add(channel, lambda data: None)
    took = []
    for _ in range(20):
        connections = plain_hub.connections
        plan.count = 1
        await raw.publish(channel, b'x')
        start = time.monotonic()
        await _reconnected(plain_hub, connections)
        took.append(time.monotonic() - start)
    # One drop after a good connection waits base * 2 = 0.02 s, not the cap.
    assert max(took[-5:]) < 0.3, took


@pytest.mark.asyncio
async def test_an_error_reply_to_one_read_of_a_listing_fails_the_listing(
    redis_url: str, namespace: str
) -> None:
    backend = RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=SecretStr(redis_url)),
    )
    async with backend:
        for task_id in ('a', 'b', 'c'):
            await TaskWriter(backend.task_store, ALICE, make_task(task_id)).create()
        plan = Armed('pipeline:HMGET', 'server')
        inject_faults(backend, plan, commands=False, pipelines=True)
        plan.count = 1
        # A transient error (BUSY) must not shrink the page nor the count.
        with pytest.raises(ResponseError, match='BUSY'):
            await backend.task_store.list(ListTasksRequest(), ALICE)
        assert plan.count == 0
        listed = await backend.task_store.list(ListTasksRequest(), ALICE)
        assert (listed.total_size, len(listed.tasks)) == (3, 3)


class Heard:
    """A channel handler that counts (re)subscriptions and wake-ups."""

    def __init__(self) -> None:
        self.subscribed = 0
        self.wakeups = 0

    def __call__(self, data: bytes | None) -> None:
        if data is None:
            self.subscribed += 1
        else:
            self.wakeups += 1


@pytest.mark.asyncio
@pytest.mark.parametrize('before', [True, False])
async def test_an_error_reply_to_one_subscribe_is_retried_in_place(
    plain_hub: RedisWakeupHub, plan: Armed, before: bool
) -> None:
    other = Heard()
    await plain_hub.add(f'hubfix:{uuid.uuid4().hex}', other)
    connections = plain_hub.connections
    plan.call, plan.kind, plan.before = 'pubsub:SUBSCRIBE', 'server', before
    plan.count = 1
    joiner = Heard()
    async with asyncio.timeout(20):  # well within the subscribe timeout
        await plain_hub.add(f'hubfix:{uuid.uuid4().hex}', joiner)
    assert plan.count == 0
    assert joiner.subscribed == 1
    # The other subscription was left alone: no reconnect.
    assert plain_hub.connections == connections


@pytest.mark.asyncio
async def test_a_refused_subscribe_fails_the_add_promptly_and_alone(
    plain_hub: RedisWakeupHub, plan: Armed, raw: Redis
) -> None:
    other_channel = f'hubfix:{uuid.uuid4().hex}'
    other = Heard()
    await plain_hub.add(other_channel, other)
    connections = plain_hub.connections
    plan.call, plan.kind = 'pubsub:SUBSCRIBE', 'server'
    plan.count = 1000
    channel = f'hubfix:{uuid.uuid4().hex}'
    async with asyncio.timeout(20):  # well within the subscribe timeout
        with pytest.raises(ConnectionError, match=channel):
            await plain_hub.add(channel, Heard())
    plan.count = 0
    assert plain_hub.channel_count == 1
    assert plain_hub.connections == connections
    await raw.publish(other_channel, b'x')
    for _ in range(200):
        if other.wakeups:
            break
        await asyncio.sleep(0.01)
    assert other.wakeups == 1


@pytest_asyncio.fixture
async def sharded_hub(
    redis_cluster: RedisCluster3, plan: Armed
) -> AsyncIterator[ShardedWakeupHub]:
    cluster = RedisCluster.from_url(redis_cluster.url)
    await cluster.initialize()
    hub = ShardedWakeupHub(
        cluster,
        node_client,
        control_channel=f'{{hubfix:{uuid.uuid4().hex}}}:control',
        subscribe_timeout=60.0,
        backoff_base=0.01,
        backoff_cap=0.5,
    )
    backend = SimpleNamespace(client=None, hub=hub)
    inject_faults(backend, plan, commands=False, pubsub=True)
    await hub.wait_connected(5)
    yield hub
    await hub.close()
    await cluster.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize('refusals', [1, 1000], ids=['once', 'always'])
async def test_a_refused_ssubscribe_is_retried_then_fails_that_add_alone(
    sharded_hub: ShardedWakeupHub, plan: Armed, refusals: int
) -> None:
    tag = uuid.uuid4().hex
    other = Heard()
    await sharded_hub.add(f'{{{tag}}}:other', other)
    connections = sharded_hub.connections
    plan.call, plan.kind, plan.count = 'pubsub:SSUBSCRIBE', 'server', refusals
    channel = f'{{{tag}}}:joiner'  # the same slot: the same connection
    async with asyncio.timeout(20):  # well within the subscribe timeout
        if refusals == 1:
            await sharded_hub.add(channel, Heard())
        else:
            with pytest.raises(ConnectionError, match='joiner'):
                await sharded_hub.add(channel, Heard())
    plan.count = 0
    assert sharded_hub.channel_count == (2 if refusals == 1 else 1)
    assert sharded_hub.connections == connections  # no reconnect
