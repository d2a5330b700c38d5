from typing import Any

import pytest
import pytest_asyncio
from a2a.types.a2a_pb2 import TaskPushNotificationConfig

from a2a_scale import PayloadTooLargeError
from a2a_scale.testing import user_context
from a2a_scale_aws import items
from a2a_scale_aws.names import ResourceNames
from a2a_scale_aws.provision import ProvisionReport, ensure_table
from a2a_scale_aws.push import DynamoDBPushNotificationConfigStore

pytestmark = pytest.mark.aws

DAY = 86_400


def config(config_id: str, url: str = 'https://hooks.example/a') -> Any:
    return TaskPushNotificationConfig(id=config_id, url=url)


@pytest_asyncio.fixture
async def table(clients: Any, namespace: str) -> str:
    name = ResourceNames(namespace).table
    await ensure_table(clients, name, ProvisionReport())
    return name


@pytest.mark.asyncio
async def test_configs_expire_unless_dispatch_keeps_them_alive(
    clients: Any, table: str
) -> None:
    now = [1_000_000.0]
    store = DynamoDBPushNotificationConfigStore(
        clients.dynamodb, table, active_ttl_seconds=DAY, clock=lambda: now[0]
    )
    alice = user_context('alice')
    await store.set_info('busy', config('c1'), alice)
    await store.set_info('idle', config('c2'), alice)
    now[0] += 0.75 * DAY
    assert [c.id for c in await store.get_info_for_dispatch('busy')] == ['c1']
    now[0] += 0.5 * DAY  # 1.25 days after set_info
    assert [c.id for c in await store.get_info_for_dispatch('busy')] == ['c1']
    assert [c.id for c in await store.get_info('busy', alice)] == ['c1']
    assert await store.get_info('idle', alice) == []
    assert await store.get_info_for_dispatch('idle') == []


@pytest.mark.asyncio
async def test_long_ids_and_owners_fit_in_keys(clients: Any, table: str) -> None:
    store = DynamoDBPushNotificationConfigStore(clients.dynamodb, table)
    owner = user_context('o' * 5000)
    other = user_context('o' * 4999 + 'p')
    long_id = 'c' * 3000
    await store.set_info('t1', config(long_id), owner)
    await store.set_info('t1', config(long_id, 'https://hooks.example/b'), other)
    assert [c.url for c in await store.get_info('t1', owner)] == [
        'https://hooks.example/a'
    ]
    assert len(await store.get_info_for_dispatch('t1')) == 2
    await store.delete_info('t1', owner, long_id)
    assert await store.get_info('t1', owner) == []
    assert len(await store.get_info('t1', other)) == 1


@pytest.mark.asyncio
async def test_too_long_task_id_is_a_clear_error(clients: Any, table: str) -> None:
    store = DynamoDBPushNotificationConfigStore(clients.dynamodb, table)
    alice = user_context('alice')
    task_id = 't' * 3000
    with pytest.raises(PayloadTooLargeError, match='Task id'):
        await store.set_info(task_id, config('c1'), alice)
    assert await store.get_info(task_id, alice) == []
    assert await store.get_info_for_dispatch(task_id) == []
    await store.delete_info(task_id, alice)


def test_key_parts_cannot_collide() -> None:
    short = items.key_part('abc')
    assert short == '3:abc'
    long_value = 'x' * (items.KEY_PART_LIMIT + 1)
    hashed = items.key_part(long_value)
    assert len(hashed.encode()) < 100
    assert hashed != items.key_part(long_value[:-1] + 'y')
    assert items.key_part(hashed) != hashed  # a short value never looks hashed
