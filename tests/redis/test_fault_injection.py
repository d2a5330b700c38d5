"""Faults in pipelines and on the Pub/Sub connection, on Redis and a Cluster.

`inject_faults(pipelines=True, pubsub=True)` makes pipeline executions and
the wake-up hub's Pub/Sub commands and reads fail while thousands of events
are written; every subscriber must still receive each event once, in order,
and none may be left waiting. Each scenario also runs on a deliberately
broken variant (a hub that forgets to tell its handlers to catch up after a
resubscription; a Cluster save whose failed feed follow-up is not retried)
and must fail there: that proves the faults reach what they claim to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ClassVar

import pytest
from a2a.server.cluster import TaskVersion
from a2a.types.a2a_pb2 import TaskState, TaskStatusUpdateEvent
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from a2a_scale import Backend, ScaleSettings
from a2a_scale.testing import (
    Fault,
    FaultConformance,
    FaultPlan,
    make_task,
    user_context,
)
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.keys import KeySpace
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.testing import RedisCluster3, inject_faults

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ALICE = user_context('alice')
OPTIONS: dict[str, Any] = {
    'retries': 60,
    'backoff_cap': 0.1,
    'socket_timeout': 5.0,
    'ping_interval': 0.5,
}
# The Pub/Sub calls, plain and sharded (SSUBSCRIBE, on a Cluster).
WAKEUP_READS = {'pubsub:read:message', 'pubsub:read:smessage'}
CONFIRMATION_READS = {
    'pubsub:read:subscribe',
    'pubsub:read:ssubscribe',
    'pubsub:read:pong',
}
PUBSUB_COMMANDS = {
    'pubsub:SUBSCRIBE',
    'pubsub:UNSUBSCRIBE',
    'pubsub:SSUBSCRIBE',
    'pubsub:SUNSUBSCRIBE',
    'pubsub:PING',
}

Breaker = Callable[[RedisBackend], None]


class Plans:
    """Several `FaultPlan`s, each for its own calls, as one plan."""

    def __init__(self, *plans: FaultPlan) -> None:
        self.plans = plans

    def next_fault(self, call: str) -> Fault | None:
        for plan in self.plans:
            if call in plan.calls:
                return plan.next_fault(call)
        return None

    @property
    def fired(self) -> list[Fault]:
        return [fault for plan in self.plans for fault in plan.fired]


def backend_for(url: str, namespace: str, **redis: Any) -> RedisBackend:
    return RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(**{'url': url, **OPTIONS, **redis}),
    )


class Writer:
    """Saves status updates of one task back to back."""

    def __init__(self, backend: RedisBackend, task_id: str) -> None:
        self.backend = backend
        self.task = make_task(task_id, state=TaskState.TASK_STATE_WORKING)
        self.version = TaskVersion.MISSING

    async def save(self, count: int, pace: float = 0.0) -> int:
        """Saves `count` events, `pace` seconds apart; returns the last version."""
        for _ in range(count):
            if pace:
                await asyncio.sleep(pace)
            first = self.version == TaskVersion.MISSING
            event: Any = self.task
            if not first:
                event = TaskStatusUpdateEvent(
                    task_id=self.task.id,
                    context_id=self.task.context_id,
                    status=self.task.status,
                )
            self.version = await self.backend.task_store.save(
                self.task, event=event, prev=None, prev_version=self.version,
                context=ALICE,
            )  # fmt: skip
        return int(self.version._value)


class Reader:
    """One subscriber from the start; records every version it receives."""

    def __init__(self, backend: RedisBackend, task_id: str) -> None:
        self.versions: list[int] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._run(backend, task_id))

    async def _run(self, backend: RedisBackend, task_id: str) -> None:
        stream = backend.event_stream.subscribe(task_id, after=TaskVersion(0))
        async for item in stream:
            self.versions.append(int(item.version._value))
            self.changed.set()

    async def reach(self, version: int, seconds: float) -> None:
        """Waits until this reader received `version`; fails when stuck."""
        async with asyncio.timeout(seconds):
            while not self.versions or self.versions[-1] < version:
                if self.task.done():
                    self.task.result()
                    raise AssertionError('the subscription ended')
                self.changed.clear()
                await self.changed.wait()

    def check(self, last: int) -> None:
        expected = list(range(1, last + 1))
        assert len(self.versions) == len(expected), 'lost or duplicated events'
        assert self.versions == expected, 'reordered events'


async def churn(backend: RedisBackend, task_id: str, stop: asyncio.Event) -> int:
    """Subscribes to `task_id` and leaves, again and again (SUBSCRIBE/UNSUBSCRIBE)."""
    rounds = 0
    while not stop.is_set():
        stream = backend.event_stream.subscribe(task_id, after=TaskVersion(0))
        try:
            async with asyncio.timeout(10):
                seen = [int(item.version._value) async for item in _first(stream, 2)]
        finally:
            await stream.aclose()
        assert seen == [1, 2], seen
        rounds += 1
        await asyncio.sleep(0.05)
    return rounds


async def _first(stream: Any, count: int) -> Any:
    n = 0
    async for item in stream:
        yield item
        n += 1
        if n >= count:
            return


def forget_resubscribe(backend: RedisBackend) -> None:
    """Broken hub: a handler hears `None` for the first subscription only."""
    hub = backend.hub
    add = hub.add

    async def add_forgetting(channel: str, handler: Callable[..., None]) -> None:
        told = False

        def forgetful(data: bytes | None) -> None:
            nonlocal told
            if data is None:
                if told:
                    return
                told = True
            handler(data)

        await add(channel, forgetful)

    hub.add = add_forgetting  # type: ignore[method-assign]


async def pubsub_scenario(
    url: str,
    namespace: str,
    *,
    events: int,
    stuck_after: float,
    cluster: bool = False,
    breaker: Breaker | None = None,
) -> Plans:
    """Writes `events` events to each of two tasks while Pub/Sub calls fail."""
    a = backend_for(url, namespace, cluster=cluster)
    b = backend_for(url, namespace, cluster=cluster)
    if breaker is not None:
        breaker(b)
    async with a, b:
        wakeups = FaultPlan(every=40, calls=WAKEUP_READS)
        plan = Plans(
            wakeups,
            FaultPlan(every=7, calls=CONFIRMATION_READS),
            FaultPlan(every=10, calls=PUBSUB_COMMANDS),
        )
        inject_faults(b, plan, commands=False, pubsub=True)
        writers = [Writer(a, f'ps-{i}') for i in range(2)]
        side = Writer(a, 'ps-side')
        await side.save(2)
        readers = [Reader(b, w.task.id) for w in writers for _ in range(3)]
        stop = asyncio.Event()
        churning = asyncio.create_task(churn(b, side.task.id, stop))
        try:
            await asyncio.sleep(0.1)
            await asyncio.gather(*(w.save(events - 1, 0.001) for w in writers))
            await asyncio.gather(*(r.reach(events - 1, stuck_after) for r in readers))
            stop.set()
            assert await asyncio.wait_for(churning, 15) >= 1
            # The last wake-up of each task is lost with its connection: only
            # a catch-up after the resubscription delivers that event.
            for i, writer in enumerate(writers):
                wakeups.fail_next(1)
                await writer.save(1)
                for reader in readers[3 * i : 3 * i + 3]:
                    await reader.reach(events, stuck_after)
        finally:
            for each in plan.plans:
                each.fail_next(0)
                each.stop()
            churning.cancel()
            for reader in readers:
                reader.task.cancel()
            await asyncio.gather(
                churning, *(r.task for r in readers), return_exceptions=True
            )
        for reader in readers:
            reader.check(events)
        assert b.hub.connections > 2
    return plan


def drop_feed_retry(backend: RedisBackend) -> None:
    """Broken Cluster save: the feed follow-up of a failed pipeline is dropped."""
    store: Any = backend.task_store

    async def append(fields: dict[Any, Any]) -> None:
        del fields

    store._cluster_follow_up._feed.append = append


async def feed_versions(url: str, namespace: str) -> list[int]:
    client = RedisCluster.from_url(url)
    try:
        entries: Any = await client.xrange(KeySpace(namespace).feed)
    finally:
        await client.aclose()
    return sorted({int(fields[b'v']) for _, fields in entries})


async def pipeline_scenario(
    url: str, namespace: str, *, events: int, breaker: Breaker | None = None
) -> Plans:
    """Writes `events` events on a Cluster while its pipelines fail."""
    a = backend_for(url, namespace, cluster=True)
    b = backend_for(url, namespace, cluster=True)
    if breaker is not None:
        breaker(a)
    async with a, b:
        plan = Plans(
            FaultPlan(every=11, calls={'pipeline'}),
            FaultPlan(every=5, calls={'pipeline:XADD'}),
            FaultPlan(every=7, calls={'pipeline:PEXPIRE', 'pipeline:ZADD'}),
        )
        inject_faults(a, plan, commands=False, pipelines=True)
        writer = Writer(a, 'piped')
        await writer.save(1)
        readers = [Reader(backend, 'piped') for backend in (a, b, b)]
        try:
            assert await writer.save(events - 1) == events
            for reader in readers:
                await reader.reach(events, 10)
        finally:
            for reader in readers:
                reader.task.cancel()
            await asyncio.gather(*(r.task for r in readers), return_exceptions=True)
        for reader in readers:
            reader.check(events)
    assert await feed_versions(url, namespace) == list(range(1, events + 1)), (
        'the feed lost events'
    )
    return plan


async def must_fail(
    scenario: Awaitable[Any], error: type[Exception], match: str | None = None
) -> None:
    """Runs `scenario` on a broken variant: it must fail, and for this reason."""
    with pytest.raises(error, match=match):
        await scenario


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster3) -> str:
    return redis_cluster.url


async def _destroy(url: str, namespace: str, *, cluster: bool) -> None:
    client: Any = RedisCluster.from_url(url) if cluster else Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f'*{namespace}*', count=1000)]
        for key in keys:
            with contextlib.suppress(Exception):
                await client.delete(key)
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_pubsub_faults_lose_nothing_on_redis(
    redis_url: str, namespace: str
) -> None:
    try:
        plan = await pubsub_scenario(redis_url, namespace, events=1000, stuck_after=10)
    finally:
        await _destroy(redis_url, namespace, cluster=False)
    fired = {f.call for f in plan.fired}
    assert fired & WAKEUP_READS, fired
    assert fired & CONFIRMATION_READS, fired
    assert fired & PUBSUB_COMMANDS, fired
    assert {f.kind for f in plan.fired} == {'connection', 'server'}


@pytest.mark.asyncio
@pytest.mark.parametrize('cluster', [False, True], ids=['redis', 'cluster'])
async def test_pubsub_faults_catch_a_hub_that_forgets_to_catch_up(
    request: pytest.FixtureRequest, namespace: str, cluster: bool
) -> None:
    url = request.getfixturevalue('cluster_url' if cluster else 'redis_url')
    try:
        await must_fail(
            pubsub_scenario(
                url, namespace, events=200, stuck_after=2, cluster=cluster,
                breaker=forget_resubscribe,
            ),
            TimeoutError,  # a subscriber is stuck
        )  # fmt: skip
    finally:
        await _destroy(url, namespace, cluster=cluster)


@pytest.mark.asyncio
async def test_pubsub_faults_lose_nothing_on_a_cluster(
    cluster_url: str, namespace: str
) -> None:
    try:
        plan = await pubsub_scenario(
            cluster_url, namespace, events=1000, stuck_after=10, cluster=True
        )
    finally:
        await _destroy(cluster_url, namespace, cluster=True)
    fired = {f.call for f in plan.fired}
    assert fired & WAKEUP_READS, fired
    assert fired & CONFIRMATION_READS, fired


@pytest.mark.asyncio
async def test_pipeline_faults_lose_nothing_on_a_cluster(
    cluster_url: str, namespace: str
) -> None:
    try:
        plan = await pipeline_scenario(cluster_url, namespace, events=2000)
    finally:
        await _destroy(cluster_url, namespace, cluster=True)
    fired = {(f.call, f.kind, f.before) for f in plan.fired}
    assert len(fired) >= 12, fired  # each call, kind and side


@pytest.mark.asyncio
async def test_pipeline_faults_catch_a_feed_follow_up_not_retried(
    cluster_url: str, namespace: str
) -> None:
    try:
        await must_fail(
            pipeline_scenario(
                cluster_url, namespace, events=300, breaker=drop_feed_retry
            ),
            AssertionError,
            'the feed lost events',
        )
    finally:
        await _destroy(cluster_url, namespace, cluster=True)


class EverywhereFactory:
    """The suite's fault test, with pipelines and Pub/Sub failing too."""

    cluster: ClassVar[bool] = False
    fault_events = 300

    @pytest.fixture(autouse=True)
    def _server(self, request: pytest.FixtureRequest) -> Iterator[None]:
        name = 'cluster_url' if self.cluster else 'redis_url'
        self.url = request.getfixturevalue(name)
        self.plans: list[FaultPlan] = []
        yield
        calls = {f.call.split(':')[0] for p in self.plans for f in p.fired}
        want = {'pubsub', 'pipeline'} if self.cluster else {'pubsub'}
        assert want <= calls, f'no fault reached {want - calls}'

    def create_backend(self, namespace: str) -> Backend:
        return backend_for(self.url, namespace, cluster=self.cluster)

    def inject_faults(self, backend: Backend, plan: FaultPlan) -> None:
        self.plans.append(plan)
        inject_faults(backend, plan, pipelines=True, pubsub=True)

    async def destroy_namespace(self, namespace: str) -> None:
        await _destroy(self.url, namespace, cluster=self.cluster)


class TestSuiteFaultsEverywhereOnRedis(EverywhereFactory, FaultConformance):
    """Standalone Redis."""


class TestSuiteFaultsEverywhereOnACluster(EverywhereFactory, FaultConformance):
    """The local Redis Cluster."""

    cluster = True
    timeout = 10.0
