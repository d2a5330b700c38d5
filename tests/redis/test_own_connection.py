"""`CommandBatcher`'s own connection: no pool checkout per lone command."""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import DataError

from a2a_scale import load_backend
from a2a_scale.testing import TaskWriter, make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.batching import CommandBatcher, _pack

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]


class Checkouts:
    """Counts the connections a client's pool hands out."""

    def __init__(self, client: Redis) -> None:
        self.count = 0
        pool = client.connection_pool
        get = pool.get_connection

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await get(*args, **kwargs)

        pool.get_connection = counted  # type: ignore[method-assign]


async def _own_id(batcher: CommandBatcher) -> int:
    return int(await batcher.execute('CLIENT', 'ID'))


async def test_lone_commands_share_one_connection_without_a_checkout_each(
    raw: Redis,
) -> None:
    checkouts = Checkouts(raw)
    batcher = CommandBatcher(raw)
    key = f'own:{uuid.uuid4().hex}'
    for i in range(50):
        assert await batcher.execute('INCR', key) == i + 1
    assert checkouts.count == 1
    ids = {await _own_id(batcher) for _ in range(5)}
    assert len(ids) == 1
    await raw.delete(key)
    await batcher.close()


async def test_a_killed_own_connection_costs_no_command(raw: Redis) -> None:
    batcher = CommandBatcher(raw)
    key = f'own:{uuid.uuid4().hex}'
    assert await batcher.execute('INCR', key) == 1
    for _ in range(3):
        await raw.client_kill_filter(_id=await _own_id(batcher))
        # The kill is noticed by the next command, which is sent again.
        assert await batcher.execute('GET', key) == b'1'
    assert await batcher.execute('INCR', key) == 2
    await raw.delete(key)
    await batcher.close()


async def test_a_cancelled_command_leaves_no_reply_for_the_next(raw: Redis) -> None:
    batcher = CommandBatcher(raw)
    key = f'own:{uuid.uuid4().hex}'
    blocked = asyncio.ensure_future(batcher.execute('BLPOP', key, 2))
    await asyncio.sleep(0.2)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    # Its reply (when it comes) must not be taken for the next command's.
    await raw.rpush(key, 'x')
    assert await batcher.execute('ECHO', 'next') == b'next'
    assert await raw.lpop(key) == b'x'
    await batcher.close()


async def test_an_error_reply_keeps_the_own_connection(raw: Redis) -> None:
    key = f'own:{uuid.uuid4().hex}'
    await raw.set(key, 'text')
    checkouts = Checkouts(raw)
    batcher = CommandBatcher(raw)
    with pytest.raises(Exception, match='not an integer'):
        await batcher.execute('INCR', key)
    assert await batcher.execute('GET', key) == b'text'
    assert checkouts.count == 1
    await raw.delete(key)
    await batcher.close()


async def test_a_wrapped_execute_command_sees_every_command(raw: Redis) -> None:
    seen: list[str] = []
    execute = raw.execute_command

    async def wrapped(*args: Any, **options: Any) -> Any:
        seen.append(str(args[0]))
        return await execute(*args, **options)

    batcher = CommandBatcher(raw)
    await batcher.execute('PING')  # the own connection is taken
    raw.execute_command = wrapped  # type: ignore[method-assign]
    await batcher.execute('ECHO', 'a')
    await batcher.execute('ECHO', 'b')
    assert seen == ['ECHO', 'ECHO']
    await batcher.close()


async def test_close_gives_the_connection_back(raw: Redis) -> None:
    batcher = CommandBatcher(raw)
    await batcher.execute('PING')
    own = await _own_id(batcher)
    await batcher.close()
    # The pool hands it out again; the batcher now goes through the raw.
    assert int(await raw.execute_command('CLIENT', 'ID')) == own
    assert await batcher.execute('ECHO', 'after') == b'after'


async def test_a_store_checks_out_no_connection_per_save_and_get(
    redis_url: str,
) -> None:
    namespace = f'own-{uuid.uuid4().hex[:8]}'
    backend = load_backend('redis', namespace=namespace, url=redis_url)
    assert isinstance(backend, RedisBackend)
    await backend.start()
    try:
        store = backend.task_store
        ctx = user_context('alice')
        writer = TaskWriter(store, ctx, make_task('own-1'))
        await writer.create()  # loads the save script (NOSCRIPT) once
        checkouts = Checkouts(backend.client)  # type: ignore[arg-type]
        for i in range(20):
            await writer.add_artifact(f'part {i}')
            stored = await store.get(writer.task_id, ctx)
            assert stored is not None
            assert stored.version == writer.version
        assert checkouts.count == 0
    finally:
        await backend.stop()


async def test_a_batch_goes_out_on_the_own_connection_with_each_reply(
    raw: Redis,
) -> None:
    key, text = f'own:{uuid.uuid4().hex}', f'own:{uuid.uuid4().hex}'
    await raw.set(text, 'text')
    checkouts = Checkouts(raw)
    batcher = CommandBatcher(raw)
    await batcher.execute('ECHO', 'first')
    calls = [batcher.execute('INCR', key) for _ in range(20)]
    calls.insert(10, batcher.execute('INCR', text))
    replies = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(replies.pop(10), Exception)
    assert sorted(replies) == list(range(1, 21))  # type: ignore[type-var]
    assert batcher.batches >= 1
    assert checkouts.count == 1
    await raw.delete(key, text)
    await batcher.close()


async def test_a_batch_on_a_killed_own_connection_is_sent_again(
    raw: Redis,
) -> None:
    batcher = CommandBatcher(raw)
    key = f'own:{uuid.uuid4().hex}'
    for round_ in range(3):
        await raw.client_kill_filter(_id=await _own_id(batcher))
        replies = await asyncio.gather(
            *(batcher.execute('INCR', key) for _ in range(10))
        )
        assert sorted(replies) == list(range(round_ * 10 + 1, round_ * 10 + 11))
    await raw.delete(key)
    await batcher.close()


async def test_class_level_wrappers_see_every_command(
    raw: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    execute, execute_pipeline = Redis.execute_command, Pipeline.execute

    @functools.wraps(execute)
    async def wrapped(self: Redis, *args: Any, **options: Any) -> Any:
        seen.append(str(args[0]))
        return await execute(self, *args, **options)

    @functools.wraps(execute_pipeline)
    async def wrapped_pipeline(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        seen.append(f'pipeline of {len(self.command_stack)}')
        return await execute_pipeline(self, *args, **kwargs)

    batcher = CommandBatcher(raw)
    await batcher.execute('ECHO', 'first')
    # As an instrumentation library patches redis-py (after a2a-scale loaded).
    monkeypatch.setattr(Redis, 'execute_command', wrapped)
    monkeypatch.setattr(Pipeline, 'execute', wrapped_pipeline)
    await batcher.execute('ECHO', 'a')
    replies = await asyncio.gather(*(batcher.execute('ECHO', str(i)) for i in range(5)))
    assert replies == [str(i).encode() for i in range(5)]
    # Issued in one loop turn, the five go out as one pipeline.
    assert seen == ['ECHO', 'pipeline of 5']
    await batcher.close()


@pytest.mark.parametrize(
    'command',
    [
        ('EVALSHA', 'a' * 40, 2, 'k:{1}', b'k2', 'déjà vu', -17, b'', ''),
        ('SET', 'big', b'\x00\xff' * 40_000),
        ('ZADD', 'z', 1.5, 'member', 0.1, 'other', 1e300, 'big'),
        ('SET', 'view', memoryview(b'abc')),
    ],
)
async def test_the_own_connection_packs_as_redis_py_does(
    raw: Redis, command: tuple[Any, ...]
) -> None:
    own = await raw.connection_pool.get_connection()
    try:
        commands = [command, ('PING',)]
        assert b''.join(_pack(own, commands)) == b''.join(own.pack_commands(commands))
    finally:
        await raw.connection_pool.release(own)


async def test_a_connection_encoding_text_otherwise_packs_as_redis_py_does(
    redis_url: str,
) -> None:
    client = Redis.from_url(redis_url, encoding='latin-1')
    own = await client.connection_pool.get_connection()
    try:
        commands = [('SET', 'clé', 'été')]
        packed = b''.join(_pack(own, commands))
        assert packed == b''.join(own.pack_commands(commands))
        assert 'été'.encode('latin-1') in packed
    finally:
        await client.connection_pool.release(own)
        await client.aclose()


async def test_an_argument_hiredis_refuses_gets_redis_pys_error(raw: Redis) -> None:
    batcher = CommandBatcher(raw)
    with pytest.raises(DataError):
        await batcher.execute('SET', f'own:{uuid.uuid4().hex}', True)
    assert await batcher.execute('ECHO', 'still fine') == b'still fine'
    await batcher.close()
