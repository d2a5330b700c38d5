"""The conformance suite on a local 3-master Redis Cluster."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from a2a.server.cluster import TaskVersion
from a2a.types.a2a_pb2 import TaskState, TaskStatusUpdateEvent
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from a2a_scale import Backend, ConfigurationError, ScaleSettings
from a2a_scale.testing import (
    BackendConformance,
    FaultPlan,
    make_task,
    user_context,
)
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.connection import AnyRedis
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.sharded import ShardedWakeupHub
from a2a_scale_redis.testing import (
    RedisCluster3,
    RedisServer,
    inject_faults,
    redis_binaries,
)
from service_support import need_service

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class ClusterFactory:
    """Builds Redis backends on the session's local Cluster."""

    timeout = 10.0

    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster: RedisCluster3) -> None:
        self.url = redis_cluster.url

    def create_backend(self, namespace: str) -> Backend:
        return RedisBackend(
            ScaleSettings(namespace=namespace, backend='redis'),
            RedisSettings(url=self.url, cluster=True),
        )

    def create_backend_retaining(self, namespace: str, events: int) -> Backend:
        return RedisBackend(
            ScaleSettings(namespace=namespace, backend='redis'),
            RedisSettings(url=self.url, cluster=True, stream_maxlen=events),
        )

    def inject_faults(self, backend: Backend, plan: FaultPlan) -> None:
        inject_faults(backend, plan)

    async def destroy_namespace(self, namespace: str) -> None:
        client = RedisCluster.from_url(self.url)
        try:
            for node in client.get_nodes() or []:
                del node
            keys = [
                k async for k in client.scan_iter(match=f'*{namespace}*', count=1000)
            ]
            for key in keys:
                await client.delete(key)
        finally:
            await client.aclose()


class TestRedisCluster(ClusterFactory, BackendConformance):
    """Streams mode on Redis Cluster."""


@pytest.mark.asyncio
async def test_keys_of_a_task_share_a_slot_and_spread_across_nodes(
    redis_cluster: RedisCluster3, namespace: str
) -> None:
    from a2a.server.cluster import TaskVersion

    from a2a_scale.testing import make_task, user_context

    backend = RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=redis_cluster.url, cluster=True),
    )
    async with backend:
        client = backend.client
        assert isinstance(client, RedisCluster)
        nodes = set()
        for i in range(30):
            task = make_task(f'task {{{i}}}:*')
            await backend.task_store.save(
                task,
                event=task,
                prev=None,
                prev_version=TaskVersion.MISSING,
                context=user_context('alice'),
            )
            keys = backend.task_store.keys.task(task.id)
            slots = {client.keyslot(k) for k in (keys.task, keys.events, keys.push)}
            assert len(slots) == 1
            nodes.add(client.get_node_from_key(keys.task).name)
        assert len(nodes) == 3


# Sharded Pub/Sub: wake-ups travel only to the master that owns the task.

ALICE = user_context('alice')
WORKING = TaskState.TASK_STATE_WORKING


def cluster_backend(url: str, namespace: str) -> RedisBackend:
    return RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=url, cluster=True),
    )


async def write_events(
    backend: RedisBackend, task_id: str, count: int, *, version: int = 0
) -> int:
    """Saves `count` status updates of `task_id` (created if `version` is 0)."""
    task = make_task(task_id, state=WORKING)
    current = TaskVersion(version)
    if version == 0:
        current = await backend.task_store.save(
            task, event=task, prev=None, prev_version=TaskVersion.MISSING, context=ALICE
        )
    for i in range(count):
        event = TaskStatusUpdateEvent(
            task_id=task_id, context_id=task.context_id, status=task.status
        )
        event.metadata['step'] = str(i)
        current = await backend.task_store.save(
            task, event=event, prev=None, prev_version=current, context=ALICE
        )
        await asyncio.sleep(0.002)
    return int(current._value)


async def collect(
    backend: RedisBackend, task_id: str, until: int, seen: list[int] | None = None
) -> list[int]:
    versions: list[int] = [] if seen is None else seen
    async for item in backend.event_stream.subscribe(task_id, after=TaskVersion(0)):
        versions.append(int(item.version._value))
        if versions[-1] >= until:
            break
    return versions


@contextlib.asynccontextmanager
async def node_clients(cluster: RedisCluster3) -> AsyncIterator[dict[str, Redis]]:
    """A plain client of each node, by ``host:port``."""
    clients = {f'127.0.0.1:{n.port}': Redis(port=n.port) for n in cluster.nodes}
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


async def publish_counts(client: Redis) -> tuple[int, int]:
    """(PUBLISH calls, SPUBLISH calls) since the last CONFIG RESETSTAT."""
    stats = await client.info('commandstats')
    return (
        int(stats.get('cmdstat_publish', {}).get('calls', 0)),
        int(stats.get('cmdstat_spublish', {}).get('calls', 0)),
    )


def owner_of(client: AnyRedis, key: str) -> str:
    """The ``host:port`` of the master that owns `key`."""
    assert isinstance(client, RedisCluster)
    node = client.get_node_from_key(key)
    assert node is not None
    return str(node.name)


async def bus_publishes(client: Redis) -> int:
    """Pub/Sub messages this node sent over the cluster bus (CLUSTER INFO)."""
    info = (await client.execute_command('CLUSTER', 'INFO')).decode()
    fields = dict(line.split(':', 1) for line in info.split() if ':' in line)
    return int(fields.get('cluster_stats_messages_publish_sent', 0))


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_wakeups_are_spublished_to_the_owning_master_only(
    redis_cluster: RedisCluster3, namespace: str
) -> None:
    a = cluster_backend(redis_cluster.url, namespace)
    b = cluster_backend(redis_cluster.url, namespace)
    async with a, b, node_clients(redis_cluster) as nodes:
        keys = a.task_store.keys.task('t')
        assert isinstance(a.client, RedisCluster)
        assert a.client.keyslot(keys.channel) == a.client.keyslot(keys.task)
        owner = owner_of(a.client, keys.task)
        for client in nodes.values():
            await client.config_resetstat()
        bus_before = [await bus_publishes(c) for c in nodes.values()]
        reader = asyncio.create_task(collect(b, 't', 51))
        await until(lambda: b.hub.channel_count == 1)
        assert isinstance(b.hub, ShardedWakeupHub)
        assert b.hub.shard_of(keys.channel) == owner
        await write_events(a, 't', 50)
        assert await asyncio.wait_for(reader, 20) == list(range(1, 52))
        counts = {name: await publish_counts(c) for name, c in nodes.items()}
        print(f'\n(PUBLISH, SPUBLISH) calls per node after 51 saves: {counts}')
        assert all(publish == 0 for publish, _ in counts.values())
        assert counts[owner][1] >= 51
        assert all(counts[n][1] == 0 for n in counts if n != owner)
        # Nothing was broadcast over the cluster bus.
        assert [await bus_publishes(c) for c in nodes.values()] == bus_before


@pytest.mark.asyncio
@pytest.mark.slow
async def test_1000_subscriptions_hold_one_connection_per_master(
    redis_cluster: RedisCluster3, namespace: str
) -> None:
    a = cluster_backend(redis_cluster.url, namespace)
    b = cluster_backend(redis_cluster.url, namespace)
    async with a, b, node_clients(redis_cluster) as nodes:
        for i in range(1000):
            task = make_task(f'task-{i}', state=WORKING)
            await a.task_store.save(
                task,
                event=task,
                prev=None,
                prev_version=TaskVersion.MISSING,
                context=ALICE,
            )
        seen: list[list[int]] = [[] for _ in range(1000)]
        readers = [
            asyncio.create_task(collect(b, f'task-{i}', 2, seen[i]))
            for i in range(1000)
        ]
        await until(lambda: all(s == [1] for s in seen), 30)
        assert b.hub.channel_count == 1000
        assert isinstance(b.hub, ShardedWakeupHub)
        assert b.hub.shard_count == 3
        assert b.hub.topology_reads <= 1  # at start only: adds use the slot map
        name = f'a2a-scale:{namespace}:{b.instance_id}'
        per_node = {}
        for node, client in nodes.items():
            named = [c for c in await client.client_list() if name in c['name']]
            pubsub = [c for c in named if c['name'].endswith(':pubsub')]
            per_node[node] = (len(named), len(pubsub))
        print(
            f'\n1000 subscriptions, (connections, sharded Pub/Sub) per node: {per_node}'
        )
        assert all(pubsub == 1 for _, pubsub in per_node.values())
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await until(lambda: b.hub.channel_count == 0)
        assert b.hub.shard_count == 1  # the control channel's master
        assert b.hub.connected


@pytest.mark.asyncio
async def test_subscription_survives_killed_sharded_connections(
    redis_cluster: RedisCluster3, namespace: str
) -> None:
    a = cluster_backend(redis_cluster.url, namespace)
    b = cluster_backend(redis_cluster.url, namespace)
    async with a, b, node_clients(redis_cluster) as nodes:
        owner = nodes[owner_of(a.client, a.task_store.keys.task('k').task)]
        total = 200
        readers = [asyncio.create_task(collect(b, 'k', total + 1)) for _ in range(3)]
        await until(lambda: b.hub.channel_count == 1)
        connections = b.hub.connections
        writer = asyncio.create_task(write_events(a, 'k', total))
        kills = 0
        while not writer.done():
            await asyncio.sleep(0.05)
            kills += await owner.execute_command('CLIENT', 'KILL', 'TYPE', 'pubsub')
        await writer
        results = await asyncio.wait_for(asyncio.gather(*readers), 30)
        assert kills >= 3
        assert b.hub.connections > connections
        assert isinstance(b.hub, ShardedWakeupHub)
        assert b.hub.relocations == 0  # reconnected to the same master
        for versions in results:
            assert versions == list(range(1, total + 2))


async def migrate_slot(
    nodes: dict[str, Redis], slot: int, source: str, target: str
) -> None:
    """Moves `slot` and its keys from `source` to `target`, as redis-cli does."""
    src, dst = nodes[source], nodes[target]
    src_id = (await src.execute_command('CLUSTER', 'MYID')).decode()
    dst_id = (await dst.execute_command('CLUSTER', 'MYID')).decode()
    await dst.execute_command('CLUSTER', 'SETSLOT', slot, 'IMPORTING', src_id)
    await src.execute_command('CLUSTER', 'SETSLOT', slot, 'MIGRATING', dst_id)
    while keys := await src.execute_command('CLUSTER', 'GETKEYSINSLOT', slot, 100):
        port = int(target.rpartition(':')[2])
        await src.execute_command(
            'MIGRATE', '127.0.0.1', port, '', 0, 5000, 'KEYS', *keys
        )
    for name in [target, source, *(n for n in nodes if n not in (source, target))]:
        await nodes[name].execute_command('CLUSTER', 'SETSLOT', slot, 'NODE', dst_id)


@pytest.mark.asyncio
async def test_subscription_follows_its_slot_to_another_master(
    redis_cluster: RedisCluster3, namespace: str
) -> None:
    a = cluster_backend(redis_cluster.url, namespace)
    b = cluster_backend(redis_cluster.url, namespace)
    async with a, b, node_clients(redis_cluster) as nodes:
        assert isinstance(a.client, RedisCluster)
        hub = b.hub
        assert isinstance(hub, ShardedWakeupHub)
        keys = a.task_store.keys.task('m')
        slot = a.client.keyslot(keys.task)
        source = owner_of(a.client, keys.task)
        target = next(n for n in nodes if n != source)
        seen: list[int] = []
        reader = asyncio.create_task(collect(b, 'm', 41, seen))
        await until(lambda: hub.channel_count == 1)
        assert hub.relocations == 0
        version = await write_events(a, 'm', 20)
        await until(lambda: len(seen) == 21)
        await migrate_slot(nodes, slot, source, target)
        # Redis drops the subscription (sunsubscribe); the hub moves it.
        await until(lambda: hub.shard_of(keys.channel) == target)
        assert hub.relocations >= 1
        await write_events(a, 'm', 20, version=version)
        assert await asyncio.wait_for(reader, 20) == list(range(1, 42))
        counts = await publish_counts(nodes[target])
        assert counts[1] >= 20


@pytest.mark.asyncio
async def test_a_cluster_node_older_than_redis_7_fails_clearly(
    redis_cluster: RedisCluster3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sharded Pub/Sub needs Redis 7: the start names the node and version."""

    async def info(section: str, **options: object) -> dict[str, object]:
        return {
            '127.0.0.1:1': {'redis_version': '7.2.4'},
            '127.0.0.1:2': {'redis_version': '6.2.14'},
        }

    backend = cluster_backend(redis_cluster.url, 'old')
    monkeypatch.setattr(backend.client, 'info', info)
    with pytest.raises(ConfigurationError, match=r':2 runs Redis 6\.2\.14') as e:
        async with backend:
            pass
    assert e.value.variable == 'A2A_SCALE_REDIS_CLUSTER'
    assert not backend.hub.connected


@pytest.fixture
def cluster_with_replica(tmp_path: Path) -> Iterator[tuple[RedisCluster3, RedisServer]]:
    """A private 3-master Cluster whose first master has one replica."""
    binaries = redis_binaries()
    need_service('redis-server', binaries is not None, 'not on PATH')
    assert binaries is not None
    cli = binaries[1]
    cluster = RedisCluster3(tmp_path / 'cluster')
    replica = RedisServer(tmp_path / 'replica', cluster=True)
    try:
        cluster.start()
        replica.start()
        master = cluster.nodes[0]
        master_id = subprocess.run(
            [cli, '-p', str(master.port), 'cluster', 'myid'],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        subprocess.run(
            [
                cli, '--cluster', 'add-node',
                f'127.0.0.1:{replica.port}', f'127.0.0.1:{master.port}',
                '--cluster-slave', '--cluster-master-id', master_id,
            ],
            capture_output=True, check=True, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while 'master_link_status:up' not in subprocess.run(
            [cli, '-p', str(replica.port), 'info', 'replication'],
            capture_output=True, text=True, check=False,
        ).stdout:  # fmt: skip
            assert time.monotonic() < deadline, 'the replica did not sync'
            time.sleep(0.1)
        yield cluster, replica
    finally:
        replica.stop()
        cluster.stop()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_subscription_follows_a_failover(
    cluster_with_replica: tuple[RedisCluster3, RedisServer], namespace: str
) -> None:
    """The master of a followed task dies; its replica takes over the slots."""
    cluster, replica = cluster_with_replica
    master = cluster.nodes[0]
    url = cluster.nodes[1].url
    a, b = cluster_backend(url, namespace), cluster_backend(url, namespace)
    async with a, b:
        hub = b.hub
        assert isinstance(hub, ShardedWakeupHub)
        task_id = next(
            t
            for t in (f'task-{i}' for i in range(100))
            if owner_of(a.client, a.task_store.keys.task(t).task)
            == f'127.0.0.1:{master.port}'
        )
        channel = a.task_store.keys.task(task_id).channel
        seen: list[int] = []
        reader = asyncio.create_task(collect(b, task_id, 41, seen))
        await until(lambda: hub.channel_count == 1)
        assert hub.relocations == 0
        version = await write_events(a, task_id, 20)
        await until(lambda: len(seen) == 21)
        await asyncio.to_thread(master.stop)
        async with Redis(port=replica.port) as promoted:
            await until(
                lambda: hub.shard_of(channel) == f'127.0.0.1:{replica.port}', 30
            )
            role = await promoted.execute_command('ROLE')
            assert role[0] == b'master'
        await write_events(a, task_id, 20, version=version)
        assert await asyncio.wait_for(reader, 30) == list(range(1, 42))
        assert hub.relocations >= 1
