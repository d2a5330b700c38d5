"""The conformance suite on a local 3-master Redis Cluster."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster

from a2a_scale import Backend, ScaleSettings
from a2a_scale.testing import BackendConformance
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.testing import RedisCluster3

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
