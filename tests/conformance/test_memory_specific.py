"""Memory-backend behaviour beyond the shared conformance suite."""

import asyncio
import gc
import threading
import weakref
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    TaskVersion,
    VersionedEvent,
)
from a2a.server.tasks import TaskStore
from a2a.types.a2a_pb2 import (
    ListTasksRequest,
    Message,
    Part,
    Role,
    TaskPushNotificationConfig,
    TaskState,
)
from google.protobuf.struct_pb2 import Struct

import a2a_scale
from a2a_scale.codec import encode_event
from a2a_scale.errors import CorruptDataError, EventGapError
from a2a_scale.memory import MemoryBackend, MemorySettings, MemorySpace, get_space
from a2a_scale.settings import ScaleSettings
from a2a_scale.testing import Subscription, TaskWriter, make_task, new_id, user_context
from a2a_scale.views import VersionedTaskStoreView

pytestmark = pytest.mark.memory

COMPLETED = TaskState.TASK_STATE_COMPLETED
WORKING = TaskState.TASK_STATE_WORKING
CANCELED = TaskState.TASK_STATE_CANCELED
ALICE = user_context('alice')


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError('condition never held')


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _backend(
    space: MemorySpace, *, retention: int = 60, max_events: int = 10_000
) -> MemoryBackend:
    return MemoryBackend(
        ScaleSettings(namespace=space.namespace, retention_seconds=retention),
        MemorySettings(max_events_per_task=max_events),
        space=space,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def backend(clock: FakeClock) -> AsyncIterator[MemoryBackend]:
    async with _backend(MemorySpace(new_id('ns')[:30], clock=clock)) as started:
        yield started


# --- Versions and the registry ---------------------------------------------


@pytest.mark.asyncio
async def test_versions_are_consecutive_integers(backend: MemoryBackend) -> None:
    writer = TaskWriter(backend.task_store, ALICE, make_task())
    await writer.create()
    assert writer.version == TaskVersion(1)
    await writer.set_state(WORKING)
    assert writer.version == TaskVersion(2)
    cancelled = make_task(writer.task_id, state=CANCELED)
    version = await backend.task_store.save(
        cancelled, event=None, prev=None, prev_version=TaskVersion(1), context=ALICE
    )
    assert version == TaskVersion(3)


def test_backends_of_one_namespace_share_a_space() -> None:
    namespace = new_id('ns')[:30]
    first = MemoryBackend(ScaleSettings(namespace=namespace))
    second = MemoryBackend(ScaleSettings(namespace=namespace))
    other = MemoryBackend(ScaleSettings(namespace=f'{namespace}x'))
    assert first.space is second.space is get_space(namespace)
    assert other.space is not first.space
    explicit = MemorySpace(namespace)
    assert (
        MemoryBackend(ScaleSettings(namespace=namespace), space=explicit).space
        is explicit
    )


def test_unused_spaces_are_released() -> None:
    namespace = new_id('ns')[:30]
    space = weakref.ref(MemoryBackend(ScaleSettings(namespace=namespace)).space)
    gc.collect()
    assert space() is None


@pytest.mark.asyncio
async def test_load_backend_builds_memory_backend() -> None:
    namespace = new_id('ns')[:30]
    backend = a2a_scale.load_backend(
        'memory', namespace=namespace, max_events_per_task=5
    )
    assert isinstance(backend, MemoryBackend)
    assert backend.space is get_space(namespace)
    assert backend.event_stream.max_events_per_task == 5
    async with backend:
        assert [r.component for r in await backend.health()] == [
            'store',
            'stream',
            'push_store',
            'replicas',
        ]


# --- Retention -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_finished_task_and_log_expire_after_retention(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    writer = TaskWriter(backend.task_store, ALICE, make_task())
    await writer.create()
    await backend.push_config_store.set_info(
        writer.task_id, TaskPushNotificationConfig(url='https://h.example'), ALICE
    )
    clock.now += 3600  # a running task never expires
    await writer.set_state(COMPLETED)
    clock.now += 59
    assert await backend.task_store.get(writer.task_id, ALICE) is not None
    clock.now += 1
    assert await backend.task_store.get(writer.task_id, ALICE) is None
    assert await backend.push_config_store.get_info_for_dispatch(writer.task_id) == []
    assert backend.space.task_count() == 0
    listed = await backend.task_store.list(ListTasksRequest(), ALICE)
    assert listed.total_size == 0


@pytest.mark.asyncio
async def test_heartbeat_sweeps_expired_tasks_without_access(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    for i in range(5):
        writer = TaskWriter(backend.task_store, ALICE, make_task())
        await writer.create()
        if i % 2 == 0:
            await writer.set_state(COMPLETED)
    assert backend.space.task_count() == 5
    clock.now += 61
    await backend.lifecycle.heartbeat()
    assert backend.space.task_count() == 2


@pytest.mark.asyncio
async def test_retention_counts_from_the_first_terminal_write(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    writer = TaskWriter(backend.task_store, ALICE, make_task())
    await writer.create()
    await writer.set_state(COMPLETED)
    clock.now += 50
    await writer.set_state(COMPLETED, text='late detail')
    clock.now += 10
    assert await backend.task_store.get(writer.task_id, ALICE) is None


@pytest.mark.asyncio
async def test_published_only_log_expires(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    task_id = new_id()
    message = Message(message_id='m', role=Role.ROLE_AGENT, parts=[Part(text='hi')])
    await backend.event_stream.publish(
        task_id, VersionedEvent(message, TaskVersion.MISSING)
    )
    assert backend.space.task_count() == 1
    clock.now += 61
    await backend.lifecycle.heartbeat()
    assert backend.space.task_count() == 0


@pytest.mark.asyncio
async def test_log_is_capped(clock: FakeClock) -> None:
    async with _backend(MemorySpace('capped', clock=clock), max_events=5) as backend:
        writer = TaskWriter(backend.task_store, ALICE, make_task())
        await writer.create()
        for i in range(9):
            await writer.add_artifact(f'a{i}')
        subscription = Subscription(
            backend.event_stream, writer.task_id, after=TaskVersion(5)
        )
        try:
            got = await subscription.take(5)
            assert [e.version for e in got] == [TaskVersion(v) for v in range(6, 11)]
        finally:
            await subscription.close()
        # Versions 1-5 were dropped: a replay from the start is a gap, not a skip.
        whole = Subscription(backend.event_stream, writer.task_id)
        try:
            await whole.ended.wait()
            assert isinstance(whole.error, EventGapError)
            assert whole.error.position == 0
        finally:
            await whole.close()


@pytest.mark.asyncio
async def test_subscriber_behind_the_cap_gets_a_gap_error(clock: FakeClock) -> None:
    async with _backend(MemorySpace('behind', clock=clock), max_events=5) as backend:
        writer = TaskWriter(backend.task_store, ALICE, make_task())
        await writer.create()
        generator = backend.event_stream.subscribe(
            writer.task_id, after=TaskVersion.MISSING
        )
        first = await generator.__anext__()
        assert first.version == TaskVersion(1)
        for i in range(9):  # the subscriber reads nothing meanwhile
            await writer.add_artifact(f'a{i}')
        with pytest.raises(EventGapError) as caught:
            await generator.__anext__()
        assert caught.value.task_id == writer.task_id
        assert caught.value.position == 1
        await generator.aclose()


# --- Stream details ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_publish_dedupes_reordered_metadata(backend: MemoryBackend) -> None:
    writer = TaskWriter(backend.task_store, ALICE, make_task())
    task = make_task(writer.task_id)
    task.metadata.update({f'k{i}': i for i in range(30)})
    writer.task = task
    created = await writer.create()
    assert created is not None
    reordered = make_task(writer.task_id)
    metadata = Struct()
    metadata.update({f'k{i}': i for i in reversed(range(30))})
    reordered.metadata.CopyFrom(metadata)
    assert reordered == created.event
    appended = backend.space.publish(
        writer.task_id,
        1,
        encode_event(reordered),
        retention=60,
        max_events=100,
    )
    assert appended is False


@pytest.mark.asyncio
async def test_corrupt_log_entry_names_its_key(backend: MemoryBackend) -> None:
    task_id = new_id()
    backend.space.publish(task_id, 1, b'\xff\xff', retention=60, max_events=10)
    subscription = Subscription(backend.event_stream, task_id, timeout=2)
    try:
        with pytest.raises(AssertionError, match='CorruptDataError'):
            await subscription.next()
        assert isinstance(subscription.error, CorruptDataError)
        assert task_id in str(subscription.error)
    finally:
        await subscription.close()


@pytest.mark.asyncio
async def test_teardown_ends_the_replicas_subscriptions(backend: MemoryBackend) -> None:
    replica = _backend(backend.space)
    await replica.start()
    subscription = Subscription(replica.event_stream, new_id(), timeout=2)
    await _until(lambda: replica.event_stream.subscriber_count() == 1)
    await replica.stop()
    await asyncio.wait_for(subscription.ended.wait(), 2)
    assert subscription.error is None
    await subscription.close()


@pytest.mark.asyncio
async def test_reap_ends_dead_replicas_subscriptions(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    dead = _backend(backend.space)
    await dead.start()
    subscription = Subscription(dead.event_stream, new_id(), timeout=2)
    await _until(lambda: dead.event_stream.subscriber_count() == 1)
    clock.now += 120
    await backend.lifecycle.heartbeat()
    assert await backend.lifecycle.reap(older_than=60) == [dead.instance_id]
    await asyncio.wait_for(subscription.ended.wait(), 2)
    assert dead.event_stream.subscriber_count() == 0
    health = {r.component: r for r in await dead.health()}
    assert not health['replicas'].ok
    await dead.stop()
    await subscription.close()


@pytest.mark.asyncio
async def test_replicas_in_other_threads_and_loops(backend: MemoryBackend) -> None:
    writer_task = make_task()
    subscription = Subscription(backend.event_stream, writer_task.id, timeout=5)
    errors: list[BaseException] = []

    async def write_elsewhere() -> None:
        async with _backend(backend.space) as other:
            writer = TaskWriter(other.task_store, ALICE, writer_task)
            await writer.create()
            for i in range(20):
                await writer.add_artifact(f'part {i}')
            await writer.set_state(COMPLETED)

    def run() -> None:
        try:
            asyncio.run(write_elsewhere())
        except BaseException as e:  # reported below
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        got = await subscription.take(22)
        assert [e.version for e in got] == [TaskVersion(v) for v in range(1, 23)]
        assert got[-1].event.status.state == COMPLETED  # type: ignore[union-attr]
    finally:
        await asyncio.to_thread(thread.join, 10)
        await subscription.close()
    assert not errors


@pytest.mark.asyncio
async def test_threads_hammering_one_task_lose_no_update(
    backend: MemoryBackend,
) -> None:
    task = make_task()
    task.metadata['count'] = 0
    await TaskWriter(backend.task_store, ALICE, task).create()
    view = VersionedTaskStoreView(backend.task_store, max_attempts=1000)

    async def bump(times: int) -> None:
        store = _backend(backend.space).task_store
        for _ in range(times):
            while True:
                stored = await store.get(task.id, ALICE)
                assert stored is not None
                updated = stored.task
                updated.metadata['count'] = updated.metadata['count'] + 1
                try:
                    await store.save(
                        updated,
                        event=None,
                        prev=None,
                        prev_version=stored.version,
                        context=ALICE,
                    )
                    break
                except ConcurrentTaskModificationError:
                    continue

    await asyncio.gather(*(asyncio.to_thread(asyncio.run, bump(50)) for _ in range(3)))
    final = await view.get(task.id, ALICE)
    assert final is not None
    assert final.metadata['count'] == 150


# --- The plain TaskStore view -----------------------------------------------


@pytest.mark.asyncio
async def test_view_is_a_plain_task_store(backend: MemoryBackend) -> None:
    view = VersionedTaskStoreView(backend.task_store)
    assert isinstance(view, TaskStore)
    task = make_task(state=WORKING)
    await view.save(task, ALICE)
    await view.save(make_task(task.id, state=COMPLETED), ALICE)
    stored = await backend.task_store.get(task.id, ALICE)
    assert stored is not None
    assert stored.version == TaskVersion(2)
    assert (await view.get(task.id, ALICE)).status.state == COMPLETED  # type: ignore[union-attr]
    listed = await view.list(ListTasksRequest(), ALICE)
    assert [t.id for t in listed.tasks] == [task.id]
    await view.delete(task.id, ALICE)
    assert await view.get(task.id, ALICE) is None


@pytest.mark.asyncio
async def test_view_retries_after_a_concurrent_write(backend: MemoryBackend) -> None:
    task = make_task()
    await TaskWriter(backend.task_store, ALICE, task).create()
    real_get = backend.task_store.get
    raced = False

    async def get_then_race(task_id: str, context: object) -> object:
        nonlocal raced
        stored = await real_get(task_id, ALICE)
        if not raced and stored is not None:
            raced = True
            await backend.task_store.save(
                make_task(task_id, state=WORKING),
                event=None,
                prev=None,
                prev_version=stored.version,
                context=ALICE,
            )
        return stored

    backend.task_store.get = get_then_race  # type: ignore[method-assign]
    view = VersionedTaskStoreView(backend.task_store)
    await view.save(make_task(task.id, state=COMPLETED), ALICE)
    del backend.task_store.get
    stored = await backend.task_store.get(task.id, ALICE)
    assert stored is not None
    assert stored.task.status.state == COMPLETED
    assert stored.version == TaskVersion(3)


@pytest.mark.asyncio
async def test_view_refuses_what_no_retry_can_fix(backend: MemoryBackend) -> None:
    view = VersionedTaskStoreView(backend.task_store)
    with pytest.raises(ConcurrentTaskModificationError):
        await view.save(make_task(state=CANCELED), ALICE)
    task = make_task()
    await view.save(task, ALICE)
    with pytest.raises(ConcurrentTaskModificationError):
        await view.save(make_task(task.id), user_context('bob'))
    with pytest.raises(ValueError, match='max_attempts'):
        VersionedTaskStoreView(backend.task_store, max_attempts=0)
