"""Gap 3: pushes for the states the SDK writes itself, exactly once.

The SDK pushes the events an agent emits. It does not push CANCELED written by
a cancel served on a replica that does not run the task, CANCELED written
after an executor whose `cancel` emits nothing, nor FAILED written after an
executor raises. The recording sender is shared by all replicas, so counts are
cluster-wide; handlers are closed (drained) before counting, so a late
duplicate would be seen.
"""

from __future__ import annotations

import asyncio

import pytest
from a2a.types.a2a_pb2 import CancelTaskRequest, GetTaskRequest, TaskState
from handler_support import (
    WAIT,
    Cluster,
    Completes,
    FailsThenRaises,
    Raises,
    WaitsForCancel,
    call_context,
    expect_sdk_gap,
    send_request,
    start_task,
    state_of,
    user_message,
)

CANCELED = TaskState.TASK_STATE_CANCELED
COMPLETED = TaskState.TASK_STATE_COMPLETED
FAILED = TaskState.TASK_STATE_FAILED
SHORT = 2.0


@pytest.mark.asyncio
async def test_remote_cancel_is_pushed_once(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    expect_sdk_gap(cluster, request, 'no push for a remote cancel')
    agent = WaitsForCancel()
    a, _, c = cluster.replicas(agent, count=3)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)

    cancelled = await asyncio.wait_for(
        c.on_cancel_task(CancelTaskRequest(id=task.id), ctx), WAIT
    )
    assert state_of(cancelled) == CANCELED
    # Served remotely: C writes CANCELED. (With the fixes, A's cancel watch
    # then stops A's agent too; that must not push a second CANCELED.)
    await cluster.aclose()
    assert cluster.pushes.count(task.id, CANCELED) == 1


@pytest.mark.asyncio
async def test_local_cancel_is_pushed_once(cluster: Cluster) -> None:
    """The SDK pushes the agent's CANCELED; it must not be pushed twice."""
    agent = WaitsForCancel()
    (a,) = cluster.replicas(agent, count=1)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)

    cancelled = await asyncio.wait_for(
        a.on_cancel_task(CancelTaskRequest(id=task.id), ctx), WAIT
    )
    assert state_of(cancelled) == CANCELED
    assert agent.cancelled.is_set()
    await cluster.aclose()
    assert cluster.pushes.count(task.id, CANCELED) == 1


@pytest.mark.asyncio
async def test_local_cancel_without_agent_event_is_pushed_once(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    """An executor whose cancel only cleans up: the SDK writes CANCELED itself."""
    expect_sdk_gap(cluster, request, 'no push for the CANCELED the SDK writes')
    agent = WaitsForCancel(report_cancel=False)
    (a,) = cluster.replicas(agent, count=1)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)

    cancelled = await asyncio.wait_for(
        a.on_cancel_task(CancelTaskRequest(id=task.id), ctx), WAIT
    )
    assert state_of(cancelled) == CANCELED
    await cluster.aclose()
    assert cluster.pushes.count(task.id, CANCELED) == 1


@pytest.mark.asyncio
async def test_failure_after_executor_exception_is_pushed_once(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    expect_sdk_gap(cluster, request, 'no push for FAILED after an exception')
    a, b = cluster.replicas(Raises())
    ctx = call_context()
    task = await start_task(a, ctx)

    # Pushed while the replica keeps serving, not only when it shuts down.
    await cluster.pushes.wait_for(task.id, FAILED, within=SHORT)
    stored = await b.on_get_task(GetTaskRequest(id=task.id), ctx)
    assert state_of(stored) == FAILED
    await cluster.aclose()
    assert cluster.pushes.count(task.id, FAILED) == 1


@pytest.mark.asyncio
async def test_failure_the_agent_reported_is_pushed_once(cluster: Cluster) -> None:
    """The agent reports FAILED (the SDK pushes it), then raises."""
    (a,) = cluster.replicas(FailsThenRaises(), count=1)
    ctx = call_context()
    task = await start_task(a, ctx)
    await cluster.pushes.wait_for(task.id, FAILED)
    await cluster.aclose()
    assert cluster.pushes.count(task.id, FAILED) == 1


@pytest.mark.asyncio
async def test_completion_is_pushed_once(cluster: Cluster) -> None:
    (a,) = cluster.replicas(Completes(), count=1)
    ctx = call_context()
    done = await asyncio.wait_for(
        a.on_message_send(send_request(user_message()), ctx), WAIT
    )
    assert state_of(done) == COMPLETED
    await cluster.aclose()
    assert cluster.pushes.count(done.id, COMPLETED) == 1
    assert cluster.pushes.count(done.id, FAILED) == 0
