"""Gap 4: a cancel served by another replica stops an idle agent.

The SDK serves a cancel on a replica that does not run the task by writing
CANCELED to the shared store. The replica that runs the agent only notices
at the agent's next save; an agent waiting on something else (a model, a
timer, a queue) runs on. `WaitsForCancel` is such an agent: it never saves
after starting work.
"""

from __future__ import annotations

import asyncio

import pytest
from a2a.types.a2a_pb2 import CancelTaskRequest, GetTaskRequest, TaskState
from handler_support import (
    WAIT,
    Cluster,
    InputThenComplete,
    WaitsForCancel,
    call_context,
    expect_sdk_gap,
    send_request,
    start_task,
    state_of,
    user_message,
    wait_until_stored,
)

from a2a_scale.handler import ClusterRequestHandler
from a2a_scale.handler.cancel_watch import RunLog

FIXED_ONLY = pytest.mark.parametrize(
    'cluster',
    [('memory', 'fixed'), ('sqlite', 'fixed')],
    ids=['memory-fixed', 'sqlite-fixed'],
    indirect=True,
)
"""For behaviour only our handler has: the SDK variants would not apply."""

CANCELED = TaskState.TASK_STATE_CANCELED
COMPLETED = TaskState.TASK_STATE_COMPLETED
INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED
WORKING = TaskState.TASK_STATE_WORKING
SHORT = 2.0


@pytest.mark.asyncio
async def test_cancel_from_another_replica_stops_an_idle_agent(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    expect_sdk_gap(cluster, request, 'idle agent never sees a remote cancel')
    agent = WaitsForCancel()
    a, _, c = cluster.replicas(agent, count=3)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    # Idle: its WORKING is saved, and it will not save again.
    await wait_until_stored(cluster, task.id, WORKING, ctx)

    cancelled = await asyncio.wait_for(
        c.on_cancel_task(CancelTaskRequest(id=task.id), ctx), WAIT
    )
    assert state_of(cancelled) == CANCELED
    await asyncio.wait_for(agent.cancelled.wait(), SHORT)


@FIXED_ONLY
@pytest.mark.asyncio
async def test_stopped_idle_agent_writes_nothing_more(cluster: Cluster) -> None:
    """The run stops without a second CANCELED or any other write."""
    agent = WaitsForCancel()
    a, b, c = cluster.replicas(agent, count=3)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    await wait_until_stored(cluster, task.id, WORKING, ctx)
    await asyncio.wait_for(c.on_cancel_task(CancelTaskRequest(id=task.id), ctx), WAIT)
    await asyncio.wait_for(agent.cancelled.wait(), SHORT)

    before = await b.on_get_task(GetTaskRequest(id=task.id), ctx)
    await asyncio.sleep(0.3)
    after = await b.on_get_task(GetTaskRequest(id=task.id), ctx)
    assert state_of(after) == CANCELED
    assert before == after
    await cluster.aclose()
    assert cluster.pushes.count(task.id, CANCELED) == 1


@pytest.mark.asyncio
async def test_local_cancel_is_not_mistaken_for_a_remote_one(
    cluster: Cluster,
) -> None:
    """A cancel served where the agent runs calls the executor's cancel once."""
    calls = 0

    class CountsCancels(WaitsForCancel):
        async def cancel(self, context, event_queue) -> None:  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            await super().cancel(context, event_queue)

    agent = CountsCancels()
    (a,) = cluster.replicas(agent, count=1)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    cancelled = await asyncio.wait_for(
        a.on_cancel_task(CancelTaskRequest(id=task.id), ctx), WAIT
    )
    assert state_of(cancelled) == CANCELED
    await asyncio.sleep(0.3)
    assert calls == 1


@FIXED_ONLY
@pytest.mark.asyncio
async def test_watch_ends_when_the_task_parks(cluster: Cluster) -> None:
    """No subscription is left behind once a turn ends in input-required."""
    agent = InputThenComplete()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    parked = await asyncio.wait_for(
        a.on_message_send(send_request(user_message()), ctx), WAIT
    )
    assert state_of(parked) == INPUT_REQUIRED
    assert isinstance(a, ClusterRequestHandler)
    watch = a._cancel_watch
    assert watch is not None
    async with asyncio.timeout(WAIT):
        while watch._runners:  # noqa: ASYNC110 (internal state, no event to wait on)
            await asyncio.sleep(0.01)

    # The follow-up on B completes it; A's parked task is not cancelled.
    done = await asyncio.wait_for(
        b.on_message_send(
            send_request(user_message(task_id=parked.id, context_id=parked.context_id)),
            ctx,
        ),
        WAIT,
    )
    assert state_of(done) == COMPLETED


@FIXED_ONLY
@pytest.mark.asyncio
async def test_opting_out_keeps_the_sdk_behaviour(cluster: Cluster) -> None:
    """``watch_remote_cancel=False`` leaves an idle agent running."""
    agent = WaitsForCancel()
    a, c = cluster.replicas(agent, count=2, watch_remote_cancel=False)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    await wait_until_stored(cluster, task.id, WORKING, ctx)
    await asyncio.wait_for(c.on_cancel_task(CancelTaskRequest(id=task.id), ctx), WAIT)
    await asyncio.sleep(0.5)
    assert not agent.cancelled.is_set()


@FIXED_ONLY
@pytest.mark.asyncio
async def test_watch_of_a_forgotten_task_reads_the_store(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica that no longer remembers a task's version reads it, and still
    stops the idle agent when another replica cancels it."""
    monkeypatch.setattr(RunLog, 'seen', lambda self, task_id: None)
    watch_reads: list[str] = []
    original_get = RunLog.get

    async def counted_get(self: RunLog, task_id: str, context: object) -> object:
        current = asyncio.current_task()
        if current is not None and current.get_name().startswith('cancel-watch:'):
            watch_reads.append(task_id)
        return await original_get(self, task_id, context)  # type: ignore[arg-type]

    monkeypatch.setattr(RunLog, 'get', counted_get)
    agent = WaitsForCancel()
    a, c = cluster.replicas(agent, count=2)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    async with asyncio.timeout(SHORT):
        while not watch_reads:  # noqa: ASYNC110 (a spy, no event to wait on)
            await asyncio.sleep(0.01)
    assert watch_reads == [task.id]
    await wait_until_stored(cluster, task.id, WORKING, ctx)

    cancelled = await asyncio.wait_for(
        c.on_cancel_task(CancelTaskRequest(id=task.id), ctx), WAIT
    )
    assert state_of(cancelled) == CANCELED
    await asyncio.wait_for(agent.cancelled.wait(), SHORT)


@pytest.mark.parametrize(
    'cluster', [('sqlite', 'fixed')], ids=['sqlite-fixed'], indirect=True
)
@pytest.mark.asyncio
async def test_close_of_a_stopping_watch_strands_no_sql_connection(
    cluster: Cluster,
) -> None:
    """A watch stopped mid-poll and then closed is cancelled only once.

    A second cancel while its SQL poll's connection is being closed makes
    SQLAlchemy's aiosqlite driver force-close it, which leaves the graceful
    close waiting forever on the connection's stopped thread; the event loop's
    shutdown then hangs on it. The SQL gate keeps the poll inside its query
    while the watch is released and then closed.
    """
    agent = WaitsForCancel()
    (a,) = cluster.replicas(agent, count=1)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    assert isinstance(a, ClusterRequestHandler)
    watch = a._cancel_watch
    assert watch is not None
    active_task = watch._watches[task.id].active_task

    gate = cluster.sql_gate
    assert gate is not None
    gate.set()
    try:
        await asyncio.sleep(0.2)  # The watch's next poll waits inside its query.
        watch.release(active_task)
        await asyncio.sleep(0.1)  # Its cancel closes the poll's connection.
        closing = asyncio.ensure_future(watch.aclose())
        await asyncio.sleep(0.1)
    finally:
        gate.clear()
    await asyncio.wait_for(closing, WAIT)

    def stranded() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if 'graceful_close' in repr(t)]

    async with asyncio.timeout(SHORT):
        while stranded():  # noqa: ASYNC110 (driver tasks, no event to wait on)
            await asyncio.sleep(0.05)
