"""The shared conformance suite on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from a2a_scale import Backend, ScaleSettings
from a2a_scale.testing import BackendConformance, FaultPlan
from a2a_scale_postgres.backend import PostgresBackend
from a2a_scale_postgres.settings import PostgresSettings
from a2a_scale_postgres.testing import drop_schema, inject_faults

pytestmark = pytest.mark.postgres


class PostgresFactory:
    """Builds PostgreSQL backends, one schema per test namespace."""

    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.dsn = postgres_dsn

    @pytest_asyncio.fixture(autouse=True)
    async def _drop_after(
        self, postgres_dsn: str, namespace: str
    ) -> AsyncIterator[None]:
        """Drops the test's schema even when a test built its own backends."""
        yield
        await drop_schema(postgres_dsn, namespace)

    def create_backend(self, namespace: str) -> Backend:
        return PostgresBackend(
            ScaleSettings(namespace=namespace, backend='postgres'),
            PostgresSettings(dsn=self.dsn, create_schema=True),
        )

    def create_backend_retaining(self, namespace: str, events: int) -> Backend:
        return PostgresBackend(
            ScaleSettings(namespace=namespace, backend='postgres'),
            PostgresSettings(
                dsn=self.dsn, create_schema=True, max_events_per_task=events
            ),
        )

    def inject_faults(self, backend: Backend, plan: FaultPlan) -> None:
        inject_faults(backend, plan)

    async def destroy_namespace(self, namespace: str) -> None:
        await drop_schema(self.dsn, namespace)

    def subscription_count(self, backend: Backend, task_id: str) -> int | None:
        assert isinstance(backend, PostgresBackend)
        return backend.event_stream.subscriber_count(task_id)


class TestPostgresConformance(PostgresFactory, BackendConformance):
    """Every conformance test on PostgreSQL."""
