"""Gap 1: a replica's parked input-required task must not serve stale state.

Replica A runs a task into input-required and keeps a parked `ActiveTask`;
the follow-up goes to replica B. The SDK then serves a `SubscribeToTask` on A
from A's parked task, which never hears of B's work, so the subscriber hangs.
"""

from __future__ import annotations

import asyncio

import pytest
from a2a.types.a2a_pb2 import SubscribeToTaskRequest, Task, TaskState
from a2a.utils.errors import UnsupportedOperationError
from handler_support import (
    Cluster,
    InputThenComplete,
    call_context,
    collect,
    ends_within,
    expect_sdk_gap,
    first_event,
    send_request,
    state_of,
    user_message,
    wait_for_logged_state,
)

SHORT = 2.0
"""Bound for waits that the SDK's stale subscription never satisfies."""

COMPLETED = TaskState.TASK_STATE_COMPLETED
INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED
WORKING = TaskState.TASK_STATE_WORKING


def _ends(event: object) -> bool:
    return state_of(event) == COMPLETED


async def _park_on(handler, agent_ctx) -> Task:  # type: ignore[no-untyped-def]
    task = await asyncio.wait_for(
        handler.on_message_send(send_request(user_message()), agent_ctx), SHORT * 5
    )
    assert isinstance(task, Task)
    assert task.status.state == INPUT_REQUIRED
    return task


def _follow_up(task: Task):  # type: ignore[no-untyped-def]
    return send_request(
        user_message('more', task_id=task.id, context_id=task.context_id)
    )


@pytest.mark.asyncio
async def test_subscriber_on_parking_replica_sees_completion_elsewhere(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    expect_sdk_gap(cluster, request, 'stale parked ActiveTask serves subscribe')
    agent = InputThenComplete()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    task = await _park_on(a, ctx)

    events = a.on_subscribe_to_task(SubscribeToTaskRequest(id=task.id), ctx)
    snapshot = await first_event(events)
    assert isinstance(snapshot, Task)
    assert snapshot.status.state == INPUT_REQUIRED

    done = await asyncio.wait_for(b.on_message_send(_follow_up(task), ctx), SHORT * 5)
    assert isinstance(done, Task)
    assert done.status.state == COMPLETED

    async def rest() -> list[object]:
        return [event async for event in events]

    try:
        later = await asyncio.wait_for(rest(), SHORT)
    finally:
        await events.aclose()
    assert COMPLETED in [state_of(e) for e in later]


@pytest.mark.asyncio
async def test_subscribe_while_other_replica_works_is_not_stale(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    expect_sdk_gap(cluster, request, 'stale parked ActiveTask serves subscribe')
    agent = InputThenComplete()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    task = await _park_on(a, ctx)
    assert cluster.shared is not None
    parked = await cluster.shared.task_store.get(task.id, ctx)
    assert parked is not None
    agent.release.clear()
    follow_up = asyncio.create_task(b.on_message_send(_follow_up(task), ctx))
    try:
        await asyncio.wait_for(agent.follow_up_started.wait(), SHORT * 5)
        await wait_for_logged_state(cluster, task.id, WORKING, after=parked.version)
        events = a.on_subscribe_to_task(SubscribeToTaskRequest(id=task.id), ctx)
        snapshot = await first_event(events)
        # The store says working; A's parked copy still says input-required.
        assert state_of(snapshot) == WORKING
        agent.release.set()
        seen = await asyncio.wait_for(collect(events, until=_ends), SHORT)
        assert state_of(seen[-1]) == COMPLETED
    finally:
        agent.release.set()
        await asyncio.wait_for(follow_up, SHORT * 5)


@pytest.mark.asyncio
async def test_local_subscriber_ends_at_input_required_like_remote_ones(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    """A subscriber must not outlive the turn it watches on the running replica.

    On a replica that does not run the task, the SDK ends the subscription at
    an interrupted state. On the replica that runs it, the SDK keeps it open on
    the parked task, which then never hears of a follow-up sent elsewhere.
    """
    expect_sdk_gap(cluster, request, 'local subscription outlives input-required')
    agent = InputThenComplete()
    agent.first_release.clear()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    stream = a.on_message_send_stream(send_request(user_message()), ctx)
    first = await first_event(stream)
    assert isinstance(first, Task)

    events = a.on_subscribe_to_task(SubscribeToTaskRequest(id=first.id), ctx)
    snapshot = await first_event(events)
    assert state_of(snapshot) not in (INPUT_REQUIRED, COMPLETED)
    agent.first_release.set()
    sender_seen = await collect(stream)
    assert state_of(sender_seen[-1]) == INPUT_REQUIRED

    subscriber_seen = await asyncio.wait_for(
        collect(events, until=lambda e: state_of(e) == INPUT_REQUIRED, close=False),
        SHORT,
    )
    assert state_of(subscriber_seen[-1]) == INPUT_REQUIRED
    # The subscription is over: nothing more is served from A's parked task.
    assert await ends_within(events, SHORT)

    done = await asyncio.wait_for(b.on_message_send(_follow_up(first), ctx), SHORT * 5)
    assert state_of(done) == COMPLETED


@pytest.mark.asyncio
async def test_subscribe_to_task_completed_elsewhere_is_refused(
    cluster: Cluster,
) -> None:
    """After B completes the task, A gives the SDK's terminal-state error."""
    agent = InputThenComplete()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    task = await _park_on(a, ctx)
    done = await asyncio.wait_for(b.on_message_send(_follow_up(task), ctx), SHORT * 5)
    assert state_of(done) == COMPLETED

    with pytest.raises(UnsupportedOperationError, match='terminal state'):
        await first_event(
            a.on_subscribe_to_task(SubscribeToTaskRequest(id=task.id), ctx)
        )


@pytest.mark.asyncio
async def test_subscribe_on_idle_replica_follows_next_turn(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    """B, which holds nothing, tails the follow-up turn A runs to completion.

    The SDK stops at the first logged event of the follow-up: the task saved
    with the new message in its history, still in input-required.
    """
    expect_sdk_gap(cluster, request, 'remote subscription stops at history save')
    agent = InputThenComplete()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    task = await _park_on(a, ctx)
    events = b.on_subscribe_to_task(SubscribeToTaskRequest(id=task.id), ctx)
    snapshot = await first_event(events)
    assert state_of(snapshot) == INPUT_REQUIRED
    done = await asyncio.wait_for(a.on_message_send(_follow_up(task), ctx), SHORT * 5)
    assert state_of(done) == COMPLETED
    seen = await collect(events, until=_ends)
    assert WORKING in [state_of(e) for e in seen]
    assert state_of(seen[-1]) == COMPLETED
