"""Conformance of the queue lifecycle and of `Backend.health`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from a2a_scale.health import COMPONENTS, REPLICAS, STREAM
from a2a_scale.testing.base import BackendFactory
from a2a_scale.testing.helpers import TaskWriter, make_task

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale.backend import Backend


class LifecycleConformance(BackendFactory):
    """Provisioning, heartbeats, reaping and teardown of replicas."""

    @pytest.mark.asyncio
    async def test_replicas_have_distinct_ids(
        self, backend: Backend, replica: Backend
    ) -> None:
        assert backend.instance_id != replica.instance_id
        assert backend.lifecycle.instance_id == backend.instance_id
        assert replica.lifecycle.instance_id == replica.instance_id

    @pytest.mark.asyncio
    async def test_provision_and_heartbeat_are_repeatable(
        self, backend: Backend
    ) -> None:
        await backend.lifecycle.provision()
        await backend.lifecycle.heartbeat()
        await backend.lifecycle.heartbeat()
        assert await backend.lifecycle.reap(older_than=3600) == []

    @pytest.mark.asyncio
    async def test_live_replicas_are_not_reaped(
        self, backend: Backend, replica: Backend
    ) -> None:
        await replica.lifecycle.heartbeat()
        assert await backend.lifecycle.reap(older_than=3600) == []

    @pytest.mark.asyncio
    async def test_silent_replica_is_reaped_once_and_never_self(
        self, backend: Backend, replica: Backend
    ) -> None:
        await backend.lifecycle.heartbeat()
        await replica.lifecycle.heartbeat()
        reaped = await backend.lifecycle.reap(older_than=0)
        assert replica.instance_id in reaped
        assert backend.instance_id not in reaped
        assert replica.instance_id not in await backend.lifecycle.reap(older_than=0)
        await replica.stop()  # tearing down after being reaped must not fail

    @pytest.mark.asyncio
    async def test_stopped_replica_is_not_left_for_reaping(
        self, backend: Backend, namespace: str
    ) -> None:
        other = self.create_backend(namespace)
        async with other:
            await other.lifecycle.heartbeat()
        assert other.instance_id not in await backend.lifecycle.reap(older_than=0)

    @pytest.mark.asyncio
    async def test_teardown_is_idempotent(self, namespace: str) -> None:
        backend = self.create_backend(namespace)
        await backend.start()
        await backend.start()
        assert backend.started
        await backend.stop()
        await backend.lifecycle.teardown()
        await backend.stop()
        assert not backend.started

    @pytest.mark.asyncio
    async def test_backend_restarts(self, namespace: str) -> None:
        backend = self.create_backend(namespace)
        async with backend:
            pass
        async with backend:
            assert backend.started
            assert await backend.lifecycle.reap(older_than=3600) == []


class HealthConformance(BackendFactory):
    """`Backend.health` reports the four standard components, with counts."""

    @pytest.mark.asyncio
    async def test_health_reports_each_component_ok(self, backend: Backend) -> None:
        reports = await backend.health()
        assert [r.component for r in reports] == list(COMPONENTS)
        assert all(r.ok for r in reports), [r.line() for r in reports]
        assert all(r.line().startswith(r.component) for r in reports)
        counts = {r.component: dict(r.counts) for r in reports}
        assert counts[REPLICAS].get('live', 0) >= 1, counts
        assert 'subscriptions' in counts[STREAM], counts


class PurgeConformance(BackendFactory):
    """`Backend.purge` deletes everything the namespace stores."""

    @pytest.mark.asyncio
    async def test_purge_deletes_every_task_of_the_namespace(
        self, namespace: str, alice: ServerCallContext
    ) -> None:
        owner = self.create_backend(namespace)
        await owner.start()
        try:
            writer = TaskWriter(owner.task_store, alice, make_task())
            await writer.create()
            deleted = await owner.purge()
        finally:
            await owner.stop()
        assert deleted, 'purge() must say what it deleted'
        assert not owner.started
        async with self.create_backend(namespace) as fresh:
            assert await fresh.task_store.get(writer.task_id, alice) is None
        await self.destroy_namespace(namespace)
