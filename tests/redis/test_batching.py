"""`CommandBatcher`: alone at once, together while busy, each its own outcome."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from a2a_scale import load_backend
from a2a_scale.testing import TaskWriter, make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.batching import CommandBatcher

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]

ECHO = 'return ARGV[1]'


class Counting:
    """Counts what a client sends: lone commands and pipelines."""

    def __init__(self, client: Redis) -> None:
        self.commands = 0
        self.pipelines: list[int] = []
        execute, pipeline = client.execute_command, client.pipeline

        async def counted(*args: Any, **options: Any) -> Any:
            self.commands += 1
            return await execute(*args, **options)

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            run = pipe.execute

            async def execute_pipe(*a: Any, **k: Any) -> Any:
                self.pipelines.append(len(pipe.command_stack))
                return await run(*a, **k)

            pipe.execute = execute_pipe  # type: ignore[method-assign]
            return pipe

        client.execute_command = counted  # type: ignore[method-assign]
        client.pipeline = counted_pipeline  # type: ignore[method-assign]


async def test_a_lone_command_goes_out_at_once(raw: Redis) -> None:
    counting = Counting(raw)
    batcher = CommandBatcher(raw)
    key = f'batch:{uuid.uuid4().hex}'
    assert await batcher.execute('SET', key, 'v')
    assert await batcher.execute('GET', key) == b'v'
    assert (counting.commands, counting.pipelines) == (2, [])
    await raw.delete(key)


async def test_commands_issued_in_one_loop_turn_go_out_together(
    raw: Redis,
) -> None:
    counting = Counting(raw)
    batcher = CommandBatcher(raw)
    key = f'batch:{uuid.uuid4().hex}'
    replies = await asyncio.gather(*(batcher.execute('INCR', key) for _ in range(50)))
    # In the order they were issued, in one pipeline.
    assert replies == list(range(1, 51))
    assert counting.commands == 0
    assert counting.pipelines == [50]
    assert (batcher.batches, batcher.batched) == (1, 50)
    await raw.delete(key)


async def test_commands_issued_while_one_is_in_flight_go_out_together(
    raw: Redis,
) -> None:
    counting = Counting(raw)
    batcher = CommandBatcher(raw, linger=False)
    key = f'batch:{uuid.uuid4().hex}'
    replies = await asyncio.gather(*(batcher.execute('INCR', key) for _ in range(50)))
    assert sorted(replies) == list(range(1, 51))
    # The first went alone; the 49 that came while it was in flight, together.
    assert counting.commands == 1
    assert counting.pipelines == [49]
    assert (batcher.batches, batcher.batched) == (1, 49)
    await raw.delete(key)


async def test_a_command_cancelled_while_it_waits_for_others_leaves_them_to_go(
    raw: Redis,
) -> None:
    batcher = CommandBatcher(raw)
    key = f'batch:{uuid.uuid4().hex}'
    first = asyncio.create_task(batcher.execute('INCR', key))
    others = [asyncio.create_task(batcher.execute('INCR', key)) for _ in range(3)]
    # Runs in the same loop turn, after the others joined the first.
    asyncio.get_running_loop().call_soon(first.cancel)
    replies = await asyncio.wait_for(asyncio.gather(*others), 5)
    assert sorted(replies) == [1, 2, 3]
    assert first.cancelled()
    assert int(await raw.get(key)) == 3
    assert not batcher._flights
    await raw.delete(key)


async def test_each_command_of_a_batch_gets_its_own_reply_or_error(
    raw: Redis,
) -> None:
    batcher = CommandBatcher(raw)
    text, number = f'batch:{uuid.uuid4().hex}', f'batch:{uuid.uuid4().hex}'
    await raw.set(text, 'not a number')
    results = await asyncio.gather(
        batcher.execute('INCR', number),
        batcher.execute('INCR', text),  # WRONG value: an error of its own
        batcher.execute('INCR', number),
        batcher.execute('LPUSH', text, 'x'),  # WRONGTYPE
        batcher.execute('INCR', number),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert results[2] == 2
    assert results[4] == 3
    assert isinstance(results[1], ResponseError)
    assert isinstance(results[3], ResponseError)
    assert 'WRONGTYPE' in str(results[3])
    await raw.delete(text, number)


async def test_a_script_missing_from_redis_is_loaded_in_a_batch_too(
    raw: Redis,
) -> None:
    batcher = CommandBatcher(raw)
    script = raw.register_script(ECHO)
    await raw.script_flush()
    replies = await asyncio.gather(
        *(batcher.script(script, [], [f'v{i}']) for i in range(10))
    )
    assert replies == [f'v{i}'.encode() for i in range(10)]
    assert batcher.batches == 1


async def test_a_connection_error_fails_the_batch_and_the_next_one_works(
    raw: Redis,
) -> None:
    batcher = CommandBatcher(raw)
    pipeline = raw.pipeline
    broken = True

    def failing_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)

        async def execute(*a: Any, **k: Any) -> Any:
            if broken:
                raise RedisConnectionError('injected')
            return await type(pipe).execute(pipe, *a, **k)

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe

    raw.pipeline = failing_pipeline  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(batcher.execute('PING') for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results)
    broken = False
    again = await asyncio.gather(*(batcher.execute('PING') for _ in range(5)))
    assert again == [True] * 5
    assert not batcher._flights


async def test_a_slow_flight_holds_the_others_back_only_briefly(
    raw: Redis,
) -> None:
    batcher = CommandBatcher(raw)
    empty = f'batch:{uuid.uuid4().hex}'
    slow = asyncio.create_task(batcher.execute('BLPOP', empty, 1))
    await asyncio.sleep(0.01)  # the slow command is in flight
    started = time.perf_counter()
    assert (
        await asyncio.gather(*(batcher.execute('PING') for _ in range(3))) == [True] * 3
    )
    waited = time.perf_counter() - started
    assert waited < 0.5, f'waited {waited:.3f} s behind a 1 s command'
    assert not slow.done()
    assert await slow is None


async def test_a_cancelled_caller_leaves_the_others_their_replies(
    raw: Redis,
) -> None:
    batcher = CommandBatcher(raw)
    key = f'batch:{uuid.uuid4().hex}'
    calls = [asyncio.create_task(batcher.execute('INCR', key)) for _ in range(10)]
    await asyncio.sleep(0)
    calls[5].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[5], asyncio.CancelledError)
    kept = [r for i, r in enumerate(results) if i != 5]
    assert len(set(kept)) == 9
    assert all(isinstance(r, int) for r in kept)
    await raw.delete(key)


async def test_a_busy_store_batches_its_saves_and_loses_no_update(
    redis_url: str,
) -> None:
    namespace = f'b{uuid.uuid4().hex[:10]}'
    backend = load_backend('redis', namespace=namespace, url=redis_url)
    assert isinstance(backend, RedisBackend)
    alice = user_context('alice')
    async with backend:
        store = backend.task_store
        writers = [TaskWriter(store, alice, make_task(f'busy-{i}')) for i in range(32)]
        await asyncio.gather(*(w.create() for w in writers))
        for round_ in range(5):
            await asyncio.gather(*(w.add_artifact(f'r{round_}') for w in writers))
        assert store.batcher.batches > 0
        for writer in writers:
            stored = await store.get(writer.task_id, alice)
            assert stored is not None
            assert stored.version == writer.version
            assert len(stored.task.artifacts) == 5
        keys = [k async for k in backend.client.scan_iter(match=f'*{namespace}*')]
        if keys:
            await backend.client.delete(*keys)


async def test_a_cluster_store_sends_each_command_alone(redis_url: str) -> None:
    batcher = CommandBatcher(Redis.from_url(redis_url), enabled=False)
    counting = Counting(batcher._client)  # type: ignore[arg-type]
    await asyncio.gather(*(batcher.execute('PING') for _ in range(5)))
    assert (counting.commands, counting.pipelines) == (5, [])
    await batcher._client.aclose()
