"""Redis-specific behaviour of the task store: keys, bad data, concurrency."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from a2a.server.cluster import ConcurrentTaskModificationError, TaskVersion
from a2a.types.a2a_pb2 import ListTasksRequest, TaskState
from redis.asyncio import Redis

from a2a_scale import CorruptDataError, ScaleSettings, load_backend
from a2a_scale.errors import ConfigurationError, InvalidTaskIdError, TerminalTaskError
from a2a_scale.testing import TaskWriter, make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.errors import RedisWrongTypeError
from a2a_scale_redis.keys import KeySpace, decode_id, encode_id
from a2a_scale_redis.settings import RedisSettings, redact_url

pytestmark = pytest.mark.redis

ALICE = user_context('alice')
HOSTILE_IDS = [
    'a{b}c',
    '}{',
    'x:y:z',
    '*',
    'with space',
    'ünïcødé-✓-𝄞',
    '{a2a:t:00}:task',
    'k' * 10_000,
]


def backend_for(url: str, namespace: str, **redis: object) -> RedisBackend:
    return RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=url, **redis),
    )


@pytest_asyncio.fixture
async def backend(redis_url: str, namespace: str) -> AsyncIterator[RedisBackend]:
    async with backend_for(redis_url, namespace) as started:
        yield started


@pytest.mark.parametrize('task_id', [*HOSTILE_IDS, ''], ids=lambda i: repr(i)[:20])
def test_encoded_ids_stay_inside_the_tag_and_namespace(task_id: str) -> None:
    keys = KeySpace('ns').task(task_id)
    for key in (keys.task, keys.events, keys.push):
        assert key.startswith('{ns:t:')
        tag = key[1 : key.index('}')]
        assert set(tag[len('ns:t:') :]) <= set('0123456789abcdef')
    assert decode_id(encode_id(task_id)) == task_id


def test_encoding_keeps_the_order_of_ids() -> None:
    ids = sorted(['b', 'a', 'ab', 'é', 'z', 'Z', '~', 'a' * 3])
    assert sorted(ids, key=encode_id) == ids


@pytest.mark.asyncio
@pytest.mark.parametrize('task_id', HOSTILE_IDS, ids=lambda i: repr(i)[:20])
async def test_hostile_ids_round_trip_and_touch_only_namespaced_keys(
    backend: RedisBackend, raw: Redis, namespace: str, task_id: str
) -> None:
    writer = TaskWriter(backend.task_store, ALICE, make_task(task_id))
    await writer.create()
    await writer.set_state(TaskState.TASK_STATE_WORKING)
    stored = await backend.task_store.get(task_id, ALICE)
    assert stored is not None
    assert stored.task.id == task_id
    listed = await backend.task_store.list(ListTasksRequest(), ALICE)
    assert [t.id for t in listed.tasks] == [task_id]
    keys = [k.decode() async for k in raw.scan_iter(match=f'*{namespace}*')]
    assert keys
    assert all(k.startswith(f'{{{namespace}:') for k in keys), keys


@pytest.mark.asyncio
async def test_corrupt_task_bytes_name_the_key_and_list_skips_them(
    backend: RedisBackend, raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    good = TaskWriter(backend.task_store, ALICE, make_task('good'))
    bad = TaskWriter(backend.task_store, ALICE, make_task('bad'))
    await good.create()
    await bad.create()
    key = backend.task_store.keys.task('bad').task
    await raw.hset(key, 'd', b'\xff\x00not a proto')
    with pytest.raises(CorruptDataError) as caught:
        await backend.task_store.get('bad', ALICE)
    assert caught.value.key == key
    with caplog.at_level(logging.ERROR):
        listed = await backend.task_store.list(ListTasksRequest(), ALICE)
    assert [t.id for t in listed.tasks] == ['good']
    assert listed.total_size == 1
    assert key in caplog.text


@pytest.mark.asyncio
async def test_wrongtype_keys_give_a_clear_error(
    backend: RedisBackend, raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    keys = backend.task_store.keys.task('t')
    await raw.set(keys.task, 'a string')
    # A reader learns nothing about the key: the task is missing for it.
    with caplog.at_level(logging.ERROR):
        assert await backend.task_store.get('t', ALICE) is None
    assert keys.task in caplog.text  # the operator is told
    with pytest.raises(RedisWrongTypeError):
        await TaskWriter(backend.task_store, ALICE, make_task('t')).create()
    await raw.delete(keys.task)
    await raw.set(keys.events, 'not a stream')
    with pytest.raises(RedisWrongTypeError) as caught:
        await TaskWriter(backend.task_store, ALICE, make_task('t')).create()
    assert caught.value.key == keys.events
    assert await raw.exists(keys.task) == 0  # nothing half-written


@pytest.mark.asyncio
async def test_list_counts_only_the_tasks_it_returns(
    backend: RedisBackend, raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = backend.task_store
    for task_id in ('good', 'corrupt', 'wrong-type'):
        await TaskWriter(store, ALICE, make_task(task_id)).create()
    corrupt = store.keys.task('corrupt').task
    wrong = store.keys.task('wrong-type').task
    await raw.hset(corrupt, 'd', b'\xff\x00not a proto')
    await raw.delete(wrong)
    await raw.set(wrong, 'a string')
    with caplog.at_level(logging.ERROR):
        listed = await store.list(ListTasksRequest(), ALICE)
    assert [t.id for t in listed.tasks] == ['good']
    assert listed.total_size == 1
    assert not listed.next_page_token
    assert corrupt in caplog.text
    assert wrong in caplog.text


@pytest.mark.asyncio
async def test_another_owners_corrupt_task_reads_as_missing(
    backend: RedisBackend, raw: Redis
) -> None:
    store = backend.task_store
    await TaskWriter(store, user_context('bob'), make_task('bobs')).create()
    await raw.hset(store.keys.task('bobs').task, 'd', b'\xff\x00not a proto')
    assert await store.get('bobs', ALICE) is None
    listed = await store.list(ListTasksRequest(), ALICE)
    assert (listed.total_size, list(listed.tasks)) == (0, [])


@pytest.mark.asyncio
async def test_an_empty_task_id_is_refused_at_save(
    backend: RedisBackend, raw: Redis, namespace: str
) -> None:
    task = make_task('x')
    task.id = ''
    with pytest.raises(InvalidTaskIdError):
        await TaskWriter(backend.task_store, ALICE, task).create()
    keys = [k async for k in raw.scan_iter(match=f'*{namespace}:t:*')]
    assert keys == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    'final', [TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_CANCELED]
)
async def test_a_terminal_state_is_final(backend: RedisBackend, final: int) -> None:
    store = backend.task_store
    writer = TaskWriter(store, ALICE, make_task('done'))
    await writer.create()
    await writer.set_state(TaskState.TASK_STATE_WORKING)
    await writer.set_state(final)
    if final == TaskState.TASK_STATE_CANCELED:
        with pytest.raises(ConcurrentTaskModificationError):  # the SDK's rule
            await writer.set_state(final)
    else:
        await writer.set_state(final)  # a re-save keeping the state is accepted
    for state in (TaskState.TASK_STATE_WORKING, TaskState.TASK_STATE_FAILED):
        with pytest.raises(TerminalTaskError):
            await writer.set_state(state)
    stored = await store.get('done', ALICE)
    assert stored is not None
    assert (stored.task.status.state, stored.version) == (final, writer.version)
    # The SDK's cancel rule: a CANCELED write over a finished task is refused.
    stored.task.status.state = TaskState.TASK_STATE_CANCELED
    if final != TaskState.TASK_STATE_CANCELED:
        with pytest.raises(ConcurrentTaskModificationError):
            await store.save(
                stored.task,
                event=None,
                prev=None,
                prev_version=stored.version,
                context=ALICE,
            )


@pytest.mark.asyncio
async def test_a_cancel_overwrites_a_running_task_without_a_version(
    backend: RedisBackend,
) -> None:
    store = backend.task_store
    writer = TaskWriter(store, ALICE, make_task('c'))
    await writer.create()
    await writer.set_state(TaskState.TASK_STATE_WORKING)
    cancel = make_task('c', state=TaskState.TASK_STATE_CANCELED)
    version = await store.save(
        cancel, event=None, prev=None, prev_version=TaskVersion(1), context=ALICE
    )
    assert version == TaskVersion(3)
    with pytest.raises(ConcurrentTaskModificationError):  # absent: refused
        await store.save(
            make_task('absent', state=TaskState.TASK_STATE_CANCELED),
            event=None,
            prev=None,
            prev_version=TaskVersion.MISSING,
            context=ALICE,
        )


@pytest.mark.asyncio
async def test_nobody_resurrects_a_task_cancelled_in_a_storm_of_saves(
    redis_url: str, namespace: str
) -> None:
    a = backend_for(redis_url, namespace)
    b = backend_for(redis_url, namespace)
    async with a, b:
        await TaskWriter(
            a.task_store, ALICE, make_task('hot', state=TaskState.TASK_STATE_WORKING)
        ).create()
        cancelled = asyncio.Event()
        after_cancel: list[int] = []
        refused = 0

        async def writer(backend: RedisBackend, name: str) -> None:
            nonlocal refused
            for n in range(10_000):
                stored = await backend.task_store.get('hot', ALICE)
                assert stored is not None
                task = stored.task
                task.status.state = TaskState.TASK_STATE_WORKING  # still at it
                task.metadata[name] = str(n)
                was_cancelled = cancelled.is_set()
                try:
                    await backend.task_store.save(
                        task,
                        event=None,
                        prev=None,
                        prev_version=stored.version,
                        context=ALICE,
                    )
                except TerminalTaskError:
                    refused += 1
                    return
                except ConcurrentTaskModificationError:
                    continue
                if was_cancelled:
                    after_cancel.append(n)

        async def canceller() -> None:
            await asyncio.sleep(0.3)
            task = make_task('hot', state=TaskState.TASK_STATE_CANCELED)
            await b.task_store.save(
                task,
                event=None,
                prev=None,
                prev_version=TaskVersion(1),
                context=ALICE,
            )
            cancelled.set()

        await asyncio.wait_for(
            asyncio.gather(
                canceller(),
                *(writer(r, f'{r.instance_id}-{i}') for i in range(4) for r in (a, b)),
            ),
            60,
        )
        final = await a.task_store.get('hot', ALICE)
        assert final is not None
        assert final.task.status.state == TaskState.TASK_STATE_CANCELED
        assert after_cancel == []
        assert refused == 8


@pytest.mark.asyncio
async def test_two_replicas_hammering_one_task_lose_no_update(
    redis_url: str, namespace: str
) -> None:
    a = backend_for(redis_url, namespace)
    b = backend_for(redis_url, namespace)
    async with a, b:
        task = make_task('hot', state=TaskState.TASK_STATE_WORKING)
        await TaskWriter(a.task_store, ALICE, task).create()
        applied: list[str] = []

        async def worker(backend: RedisBackend, name: str, count: int) -> None:
            done = 0
            while done < count:
                stored = await backend.task_store.get('hot', ALICE)
                assert stored is not None
                updated = stored.task
                updated.metadata[f'{name}-{done}'] = 'x'
                try:
                    await backend.task_store.save(
                        updated,
                        event=None,
                        prev=None,
                        prev_version=stored.version,
                        context=ALICE,
                    )
                except ConcurrentTaskModificationError:
                    continue
                applied.append(f'{name}-{done}')
                done += 1

        await asyncio.wait_for(
            asyncio.gather(
                *(
                    worker(r, f'{r.instance_id}-{i}', 25)
                    for i in range(4)
                    for r in (a, b)
                )
            ),
            60,
        )
        final = await b.task_store.get('hot', ALICE)
        assert final is not None
        assert sorted(final.task.metadata) == sorted(applied)
        assert len(applied) == 200
        assert final.version == TaskVersion(201)


@pytest.mark.asyncio
async def test_a_retried_save_is_not_applied_twice(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = backend.task_store
    real = store.batcher.script
    calls = 0

    async def flaky(*args: Any) -> object:
        nonlocal calls
        calls += 1
        reply = await real(*args)
        if calls == 1:  # the reply is lost after Redis applied the write
            return await real(*args)
        return reply

    monkeypatch.setattr(store.batcher, 'script', flaky)
    writer = TaskWriter(store, ALICE, make_task('r'))
    await writer.create()
    assert writer.version == TaskVersion(1)
    events = await backend.client.xlen(store.keys.task('r').events)
    assert events == 1


@pytest.mark.asyncio
async def test_plain_task_store_view_overwrites(backend: RedisBackend) -> None:
    plain = backend.task_store.as_task_store
    task = make_task('p')
    await plain.save(task, ALICE)
    task.status.state = TaskState.TASK_STATE_COMPLETED
    await plain.save(task, ALICE)
    got = await plain.get('p', ALICE)
    assert got is not None
    assert got.status.state == TaskState.TASK_STATE_COMPLETED
    assert (await plain.list(ListTasksRequest(), ALICE)).total_size == 1
    await plain.delete('p', ALICE)
    assert await plain.get('p', ALICE) is None


def test_passwords_never_appear_in_settings_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = 'rediss://app-user:s3cr3t-pw@redis.example:6380/2'
    settings = RedisSettings(url=url)
    assert 's3cr3t' not in settings.display_url
    assert settings.display_url == 'rediss://app-user:***@redis.example:6380/2'
    assert 's3cr3t' not in repr(settings)
    assert 's3cr3t' not in str(settings.model_dump())
    assert redact_url('redis://127.0.0.1:6379/0') == 'redis://127.0.0.1:6379/0'
    monkeypatch.setenv('A2A_SCALE_REDIS_URL', 'http://u:s3cr3t@h/0')
    with pytest.raises(ConfigurationError) as caught:
        load_backend('redis')
    assert 'A2A_SCALE_REDIS_URL' in str(caught.value)
    assert 's3cr3t' not in str(caught.value)


@pytest.mark.asyncio
async def test_unreachable_redis_fails_start_without_the_password(
    namespace: str,
) -> None:
    backend = backend_for(
        'redis://u:hunter2-pw@127.0.0.1:1/0',
        namespace,
        retries=0,
        connect_timeout=0.5,
    )
    with pytest.raises(ConnectionError) as caught:
        await backend.start()
    assert 'A2A_SCALE_REDIS_URL' in str(caught.value)
    assert 'hunter2' not in str(caught.value)
    assert not backend.started
