import asyncio
import os
from typing import Any

import pytest
import pytest_asyncio
from a2a.server.cluster import ConcurrentTaskModificationError, TaskVersion
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import (
    Artifact,
    ListTasksRequest,
    Part,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf.timestamp_pb2 import Timestamp

from a2a_scale import (
    CorruptDataError,
    InvalidTaskIdError,
    PayloadTooLargeError,
    TerminalTaskError,
)
from a2a_scale.testing.helpers import user_context
from a2a_scale_aws import items
from a2a_scale_aws.names import ResourceNames
from a2a_scale_aws.payloads import TASK_ID_LIMIT
from a2a_scale_aws.provision import ProvisionReport, ensure_table
from a2a_scale_aws.push import DynamoDBPushNotificationConfigStore
from a2a_scale_aws.store import DynamoDBTaskStore

pytestmark = pytest.mark.aws


def ctx(name: str = 'alice') -> ServerCallContext:
    return user_context(name)


def make_task(
    task_id: str,
    state: int = TaskState.TASK_STATE_WORKING,
    *,
    context_id: str = 'c1',
    ts: int | None = 1_700_000_000,
) -> Task:
    status = TaskStatus(state=state)
    if ts is not None:
        status.timestamp.CopyFrom(Timestamp(seconds=ts))
    return Task(id=task_id, context_id=context_id, status=status)


def status_event(task: Task) -> TaskStatusUpdateEvent:
    return TaskStatusUpdateEvent(
        task_id=task.id, context_id=task.context_id, status=task.status
    )


@pytest_asyncio.fixture
async def store(clients: Any, namespace: str) -> DynamoDBTaskStore:
    table = ResourceNames(namespace).table
    await ensure_table(clients, table, ProvisionReport())
    return DynamoDBTaskStore(clients.dynamodb, table)


async def save(
    store: DynamoDBTaskStore,
    task: Task,
    prev: int,
    context: ServerCallContext | None = None,
    *,
    event: bool = True,
) -> int:
    version = await store.save(
        task,
        event=status_event(task) if event else None,
        prev=None,
        prev_version=TaskVersion(prev),
        context=context or ctx(),
    )
    return int(version._value)


@pytest.mark.asyncio
async def test_save_get_and_cas(store: DynamoDBTaskStore) -> None:
    task = make_task('t1')
    assert await save(store, task, 0) == 1
    stored = await store.get('t1', ctx())
    assert stored is not None
    assert stored.task == task
    assert stored.version == TaskVersion(1)
    assert await save(store, task, 1) == 2
    with pytest.raises(ConcurrentTaskModificationError):
        await save(store, task, 1)
    with pytest.raises(ConcurrentTaskModificationError):
        await save(store, task, 0)  # a first write to an existing id


@pytest.mark.asyncio
async def test_owner_scoping(store: DynamoDBTaskStore) -> None:
    await save(store, make_task('t1'), 0, ctx('alice'))
    assert await store.get('t1', ctx('bob')) is None
    with pytest.raises(ConcurrentTaskModificationError):
        await save(store, make_task('t1'), 1, ctx('bob'))
    await store.delete('t1', ctx('bob'))
    assert await store.get('t1', ctx('alice')) is not None
    await store.delete('t1', ctx('alice'))
    assert await store.get('t1', ctx('alice')) is None


@pytest.mark.asyncio
async def test_cancel_rule(store: DynamoDBTaskStore) -> None:
    canceled = make_task('t1', TaskState.TASK_STATE_CANCELED)
    with pytest.raises(ConcurrentTaskModificationError):
        await save(store, canceled, 0)  # absent
    await save(store, make_task('t1'), 0)
    await save(store, make_task('t1'), 1)
    # A cancel with a stale version still wins over a non-terminal task.
    assert await save(store, canceled, 1) == 3
    with pytest.raises(ConcurrentTaskModificationError):
        await save(store, canceled, 3)  # already terminal
    with pytest.raises(ConcurrentTaskModificationError):
        await save(store, make_task('t1'), 2)  # the cancel bumped the version
    with pytest.raises(ConcurrentTaskModificationError):
        await save(store, make_task('t1'), 3)  # terminal is final
    stored = await store.get('t1', ctx())
    assert stored is not None
    assert stored.task.status.state == TaskState.TASK_STATE_CANCELED


@pytest.mark.asyncio
async def test_concurrent_cas_storm_loses_no_update(store: DynamoDBTaskStore) -> None:
    await save(store, make_task('t1'), 0)
    wins = 0

    async def writer() -> None:
        nonlocal wins
        for _ in range(40):
            stored = await store.get('t1', ctx())
            assert stored is not None
            try:
                await save(store, stored.task, int(stored.version._value))
            except ConcurrentTaskModificationError:
                continue
            wins += 1

    await asyncio.wait_for(asyncio.gather(*(writer() for _ in range(4))), 60)
    stored = await store.get('t1', ctx())
    assert stored is not None
    assert stored.version == TaskVersion(1 + wins)


@pytest.mark.asyncio
async def test_event_log_is_written_with_each_save(
    store: DynamoDBTaskStore, clients: Any
) -> None:
    task = make_task('t1')
    await save(store, task, 0)
    await save(store, task, 1, event=False)
    await save(store, task, 2)
    page = await clients.dynamodb.query(
        TableName=store.table_name,
        KeyConditionExpression='pk = :pk AND begins_with(sk, :e)',
        ExpressionAttributeValues={
            ':pk': {'S': items.task_pk('t1')},
            ':e': {'S': items.EVENT_PREFIX},
        },
    )
    assert [items.version_of_event_sk(i['sk']['S']) for i in page['Items']] == [1, 3]


@pytest.mark.asyncio
async def test_large_task_is_compressed_and_huge_one_rejected(
    store: DynamoDBTaskStore,
) -> None:
    task = make_task('big')
    task.artifacts.append(Artifact(artifact_id='a', parts=[Part(text='x' * 2_000_000)]))
    await save(store, task, 0)
    stored = await store.get('big', ctx())
    assert stored is not None
    assert stored.task.artifacts[0].parts[0].text == 'x' * 2_000_000

    noise = make_task('noise')
    noise.artifacts.append(
        Artifact(artifact_id='a', parts=[Part(raw=os.urandom(600_000))])
    )
    with pytest.raises(PayloadTooLargeError, match=r"400 KB.*'noise'"):
        await save(store, noise, 0)


@pytest.mark.asyncio
async def test_corrupt_item_names_the_key(
    store: DynamoDBTaskStore, clients: Any
) -> None:
    await save(store, make_task('t1'), 0)
    await clients.dynamodb.update_item(
        TableName=store.table_name,
        Key={'pk': {'S': items.task_pk('t1')}, 'sk': {'S': items.TASK_SK}},
        UpdateExpression='SET b = :b, z = :z',
        ExpressionAttributeValues={':b': {'B': b'junk'}, ':z': {'BOOL': True}},
    )
    with pytest.raises(CorruptDataError, match='t#t1'):
        await store.get('t1', ctx())


@pytest.mark.asyncio
async def test_expired_task_is_hidden(clients: Any, namespace: str) -> None:
    table = ResourceNames(namespace).table
    await ensure_table(clients, table, ProvisionReport())
    now = [1_000_000.0]
    store = DynamoDBTaskStore(
        clients.dynamodb, table, retention_seconds=60, clock=lambda: now[0]
    )
    await save(store, make_task('t1', TaskState.TASK_STATE_COMPLETED), 0)
    await save(store, make_task('t2'), 0)
    assert await store.get('t1', ctx()) is not None
    now[0] += 61
    assert await store.get('t1', ctx()) is None
    assert await store.get('t2', ctx()) is not None
    listed = await store.list(ListTasksRequest(), ctx())
    assert [t.id for t in listed.tasks] == ['t2']
    assert listed.total_size == 1


@pytest.mark.asyncio
async def test_list_order_filters_and_pages(store: DynamoDBTaskStore) -> None:
    for i in range(7):
        await save(
            store,
            make_task(
                f't{i}',
                TaskState.TASK_STATE_COMPLETED
                if i % 2
                else TaskState.TASK_STATE_WORKING,
                context_id='even' if i % 2 == 0 else 'odd',
                ts=1_700_000_000 + (i % 4),
            ),
            0,
        )
    await save(store, make_task('nots', ts=None), 0)
    await save(store, make_task('other', ts=1_800_000_000), 0, ctx('bob'))

    full = await store.list(ListTasksRequest(page_size=100), ctx())
    ids = [t.id for t in full.tasks]
    assert ids == ['t3', 't6', 't2', 't5', 't1', 't4', 't0', 'nots']
    assert full.total_size == 8
    assert full.next_page_token == ''

    seen: list[str] = []
    token = ''
    while True:
        page = await store.list(ListTasksRequest(page_size=3, page_token=token), ctx())
        assert page.total_size == 8
        seen.extend(t.id for t in page.tasks)
        token = page.next_page_token
        if not token:
            break
    assert seen == ids

    odd = await store.list(ListTasksRequest(context_id='odd'), ctx())
    assert [t.id for t in odd.tasks] == ['t3', 't5', 't1']
    done = await store.list(
        ListTasksRequest(status=TaskState.TASK_STATE_WORKING, page_size=2), ctx()
    )
    assert [t.id for t in done.tasks] == ['t6', 't2']
    assert done.total_size == 5
    after = ListTasksRequest(page_size=2)
    after.status_timestamp_after.CopyFrom(Timestamp(seconds=1_700_000_002))
    recent = await store.list(after, ctx())
    assert [t.id for t in recent.tasks] == ['t3', 't6']
    assert recent.total_size == 3
    more = ListTasksRequest(page_size=2, page_token=recent.next_page_token)
    more.status_timestamp_after.CopyFrom(Timestamp(seconds=1_700_000_002))
    rest = await store.list(more, ctx())
    assert [t.id for t in rest.tasks] == ['t2']


@pytest.mark.asyncio
async def test_long_owner_and_context_ids_fit_in_keys(store: DynamoDBTaskStore) -> None:
    owner, context_id = ctx('o' * 5000), 'c' * 5000
    await save(store, make_task('t1', context_id=context_id), 0, owner)
    assert await store.get('t1', owner) is not None
    listed = await store.list(ListTasksRequest(context_id=context_id), owner)
    assert [t.id for t in listed.tasks] == ['t1']
    near = ListTasksRequest(context_id=context_id[:-1] + 'd')
    assert (await store.list(near, owner)).tasks == []
    assert (await store.list(ListTasksRequest(), ctx('o' * 4999 + 'p'))).tasks == []


@pytest.mark.asyncio
async def test_task_id_limit_is_a_clear_error(store: DynamoDBTaskStore) -> None:
    longest = 't' * TASK_ID_LIMIT
    await save(store, make_task(longest), 0)
    listed = await store.list(ListTasksRequest(), ctx())
    assert [t.id for t in listed.tasks] == [longest]
    too_long = longest + 't'
    with pytest.raises(PayloadTooLargeError, match='Task id'):
        await save(store, make_task(too_long), 0)
    assert await store.get(too_long, ctx()) is None


@pytest.mark.asyncio
async def test_item_over_the_limit_names_the_task(store: DynamoDBTaskStore) -> None:
    # The payload compresses well, but the context id is also an attribute.
    task = make_task('big-ctx', context_id='c' * 420_000)
    with pytest.raises(PayloadTooLargeError, match=r"'big-ctx'.*409600-byte limit"):
        await save(store, task, 0)


@pytest.mark.asyncio
async def test_item_rejected_by_dynamodb_is_a_clear_error(
    store: DynamoDBTaskStore,
) -> None:
    # moto counts binary values base64-encoded, a third more than AWS does,
    # so it rejects this item that AWS stores: either way, no botocore error.
    task = make_task('dense')
    task.artifacts.append(
        Artifact(artifact_id='a', parts=[Part(raw=os.urandom(350_000))])
    )
    error: PayloadTooLargeError | None = None
    try:
        await save(store, task, 0, event=False)
    except PayloadTooLargeError as e:
        error = e
    if error is None:
        assert await store.get('dense', ctx()) is not None
    else:
        assert "'dense'" in str(error)
        assert '409600-byte limit' in str(error)


@pytest.mark.asyncio
async def test_unfinished_task_expires_after_its_last_save(
    clients: Any, namespace: str
) -> None:
    table = ResourceNames(namespace).table
    await ensure_table(clients, table, ProvisionReport())
    now = [1_000_000.0]
    store = DynamoDBTaskStore(
        clients.dynamodb,
        table,
        retention_seconds=60,
        active_ttl_seconds=600,
        clock=lambda: now[0],
    )
    forever = DynamoDBTaskStore(
        clients.dynamodb, table, active_ttl_seconds=0, clock=lambda: now[0]
    )
    await save(store, make_task('t1'), 0)
    await save(forever, make_task('t2'), 0)
    now[0] += 599
    await save(store, make_task('t1'), 1)  # a save pushes the expiry back
    now[0] += 599
    assert await store.get('t1', ctx()) is not None
    now[0] += 2
    assert await store.get('t1', ctx()) is None
    now[0] += 10 * 86_400
    assert await store.get('t2', ctx()) is not None
    listed = await store.list(ListTasksRequest(), ctx())
    assert [t.id for t in listed.tasks] == ['t2']


@pytest.mark.asyncio
async def test_delete_removes_the_event_log_and_push_configs(
    store: DynamoDBTaskStore, clients: Any
) -> None:
    await save(store, make_task('t1'), 0)
    await save(store, make_task('t1'), 1)
    push = DynamoDBPushNotificationConfigStore(clients.dynamodb, store.table_name)
    await push.set_info(
        't1', TaskPushNotificationConfig(id='c1', url='https://hooks.example'), ctx()
    )
    await store.delete('t1', ctx())
    page = await clients.dynamodb.query(
        TableName=store.table_name,
        KeyConditionExpression='pk = :pk',
        ExpressionAttributeValues={':pk': {'S': items.task_pk('t1')}},
    )
    assert page['Items'] == []
    assert await push.get_info_for_dispatch('t1') == []


@pytest.mark.asyncio
async def test_terminal_resave_is_accepted_and_terminal_exit_refused(
    store: DynamoDBTaskStore,
) -> None:
    await save(store, make_task('t1'), 0)
    await save(store, make_task('t1', TaskState.TASK_STATE_COMPLETED), 1)
    # The SDK re-saves a finished task (e.g. a final artifact) in its state.
    assert await save(store, make_task('t1', TaskState.TASK_STATE_COMPLETED), 2) == 3
    with pytest.raises(TerminalTaskError) as caught:
        await save(store, make_task('t1', TaskState.TASK_STATE_WORKING), 3)
    assert caught.value.state == 'TASK_STATE_COMPLETED'
    assert caught.value.requested == 'TASK_STATE_WORKING'
    with pytest.raises(ConcurrentTaskModificationError) as stale:
        await save(store, make_task('t1', TaskState.TASK_STATE_COMPLETED), 2)
    assert not isinstance(stale.value, TerminalTaskError)
    stored = await store.get('t1', ctx())
    assert stored is not None
    assert stored.version == TaskVersion(3)


@pytest.mark.asyncio
async def test_empty_task_id_is_refused_and_listing_still_works(
    store: DynamoDBTaskStore,
) -> None:
    with pytest.raises(InvalidTaskIdError):
        await save(store, make_task(''), 0)
    await save(store, make_task('t1'), 0)
    listed = await store.list(ListTasksRequest(), ctx())
    assert [t.id for t in listed.tasks] == ['t1']


@pytest.mark.asyncio
async def test_cancel_succeeds_while_writers_hammer_the_task(
    store: DynamoDBTaskStore,
) -> None:
    for round_ in range(10):
        task_id = f'hammered-{round_}'
        await save(store, make_task(task_id), 0)
        cancelled = asyncio.Event()

        async def writer(
            task_id: str = task_id, done: asyncio.Event = cancelled
        ) -> None:
            while not done.is_set():
                stored = await store.get(task_id, ctx())
                assert stored is not None
                if stored.task.status.state == TaskState.TASK_STATE_CANCELED:
                    return
                try:
                    await save(store, stored.task, int(stored.version._value))
                except ConcurrentTaskModificationError:
                    continue

        writers = [asyncio.create_task(writer()) for _ in range(6)]
        await asyncio.sleep(0.05)
        try:
            await save(store, make_task(task_id, TaskState.TASK_STATE_CANCELED), 1)
        finally:
            cancelled.set()
            await asyncio.gather(*writers)
        stored = await store.get(task_id, ctx())
        assert stored is not None
        assert stored.task.status.state == TaskState.TASK_STATE_CANCELED
