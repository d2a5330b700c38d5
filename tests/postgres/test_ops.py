"""The operator view on PostgreSQL: every owner, operator cancel, the feed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from a2a_scale import Backend, load_backend
from a2a_scale.ops import connected, replicas
from ops_support import check_cancel, check_listing, check_tail, seed

pytestmark = pytest.mark.postgres


def _backend(dsn: str, schema: str) -> Backend:
    return load_backend('postgres', namespace=schema, dsn=dsn, create_schema=True)


@pytest_asyncio.fixture
async def pair(
    postgres_dsn: str, schema: str
) -> AsyncIterator[tuple[Backend, Backend]]:
    async with _backend(postgres_dsn, schema) as a, _backend(postgres_dsn, schema) as b:
        yield a, b


@pytest.mark.asyncio
async def test_view_lists_cancels_and_follows_across_replicas(
    pair: tuple[Backend, Backend], postgres_dsn: str, schema: str
) -> None:
    a, b = pair
    await seed(a)
    operator = _backend(postgres_dsn, schema)
    async with connected(operator):  # not a replica: registers nothing
        await check_listing(operator)
        await check_cancel(operator)
        found = {r.instance_id: r for r in await replicas(operator)}
        assert set(found) == {a.instance_id, b.instance_id}
        assert all(r.running == [] for r in found.values())
        assert all(r.last_heartbeat for r in found.values())
        await check_tail(operator, b)
