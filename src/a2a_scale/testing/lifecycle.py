"""Conformance of the queue lifecycle and of `Backend.health`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from a2a_scale.testing.base import BackendFactory

if TYPE_CHECKING:
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
    """`Backend.health` reports each component once."""

    @pytest.mark.asyncio
    async def test_health_reports_each_component_ok(self, backend: Backend) -> None:
        reports = await backend.health()
        assert reports
        names = [r.component for r in reports]
        assert len(names) == len(set(names)), names
        assert all(r.ok for r in reports), [r.line() for r in reports]
        assert all(r.line().startswith(r.component) for r in reports)
