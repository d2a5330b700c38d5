"""Gap 2: a follow-up that carries only taskId keeps the task's contextId.

The SDK gives such a message a fresh contextId (a2a-python issue #1206), so
the agent runs the follow-up in the wrong context and the task fails.
"""

from __future__ import annotations

import asyncio

import pytest
from a2a.types.a2a_pb2 import SendMessageRequest, Task, TaskState
from a2a.utils.errors import TaskNotFoundError
from handler_support import (
    WAIT,
    Cluster,
    InputThenComplete,
    call_context,
    collect,
    expect_sdk_gap,
    send_request,
    state_of,
    user_message,
)

COMPLETED = TaskState.TASK_STATE_COMPLETED


async def _parked(handler, ctx) -> Task:  # type: ignore[no-untyped-def]
    task = await asyncio.wait_for(
        handler.on_message_send(send_request(user_message()), ctx), WAIT
    )
    assert isinstance(task, Task)
    assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    return task


@pytest.mark.asyncio
async def test_follow_up_with_task_id_only_completes_in_task_context(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    expect_sdk_gap(cluster, request, 'fresh contextId for a taskId-only follow-up')
    agent = InputThenComplete()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    task = await _parked(a, ctx)

    follow_up = send_request(user_message('more', task_id=task.id))
    original = SendMessageRequest()
    original.CopyFrom(follow_up)
    done = await asyncio.wait_for(b.on_message_send(follow_up, ctx), WAIT)

    assert state_of(done) == COMPLETED
    assert done.context_id == task.context_id
    assert agent.turns[-1] == (task.id, task.context_id)
    # The caller's request is left as it was sent.
    assert follow_up == original


@pytest.mark.asyncio
async def test_streamed_follow_up_with_task_id_only_keeps_context(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    expect_sdk_gap(cluster, request, 'fresh contextId for a taskId-only follow-up')
    agent = InputThenComplete()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    task = await _parked(a, ctx)

    events = b.on_message_send_stream(
        send_request(user_message('more', task_id=task.id)), ctx
    )
    seen = await collect(events)

    assert state_of(seen[-1]) == COMPLETED
    assert {e.context_id for e in seen} == {task.context_id}


@pytest.mark.asyncio
async def test_follow_up_of_another_owner_is_not_found(cluster: Cluster) -> None:
    """The contextId lookup is owner-scoped: nothing leaks, nothing runs."""
    agent = InputThenComplete()
    a, b = cluster.replicas(agent)
    task = await _parked(a, call_context('alice'))

    with pytest.raises(TaskNotFoundError):
        await asyncio.wait_for(
            b.on_message_send(
                send_request(user_message('more', task_id=task.id)),
                call_context('mallory'),
            ),
            WAIT,
        )
    assert len(agent.turns) == 1


@pytest.mark.asyncio
async def test_explicit_context_id_is_kept(cluster: Cluster) -> None:
    """Baseline: a follow-up naming both ids works on either handler."""
    agent = InputThenComplete()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    task = await _parked(a, ctx)
    done = await asyncio.wait_for(
        b.on_message_send(
            send_request(
                user_message('more', task_id=task.id, context_id=task.context_id)
            ),
            ctx,
        ),
        WAIT,
    )
    assert state_of(done) == COMPLETED
    assert done.context_id == task.context_id
