"""The remote-cancel watch subscribes only once a turn has run a while."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from a2a.types.a2a_pb2 import CancelTaskRequest, TaskState
from handler_support import (
    WAIT,
    Cluster,
    Completes,
    WaitsForCancel,
    call_context,
    send_request,
    start_task,
    state_of,
    user_message,
    wait_until_stored,
)

from a2a_scale.handler import ClusterRequestHandler, cancel_watch
from a2a_scale.handler.cancel_watch import WATCH_DELAY_SECONDS

FIXED_ONLY = pytest.mark.parametrize(
    'cluster',
    [('memory', 'fixed'), ('sqlite', 'fixed')],
    ids=['memory-fixed', 'sqlite-fixed'],
    indirect=True,
)


def _watch_subscriptions(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Records the task id of every subscription a cancel watch opens."""
    assert cluster.shared is not None
    stream_class = type(cluster.shared.event_stream)
    subscribe = stream_class.subscribe
    opened: list[str] = []

    def spied(self: Any, task_id: str, **kwargs: Any) -> Any:
        current = asyncio.current_task()
        if current is not None and current.get_name().startswith('cancel-watch:'):
            opened.append(task_id)
        return subscribe(self, task_id, **kwargs)

    monkeypatch.setattr(stream_class, 'subscribe', spied)
    return opened


@FIXED_ONLY
@pytest.mark.asyncio
async def test_a_quick_turn_opens_no_watch_subscription(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a,) = cluster.replicas(Completes(), count=1)
    opened = _watch_subscriptions(cluster, monkeypatch)
    done = await asyncio.wait_for(
        a.on_message_send(send_request(user_message()), call_context()), WAIT
    )
    assert state_of(done) == TaskState.TASK_STATE_COMPLETED
    await asyncio.sleep(WATCH_DELAY_SECONDS * 2)
    assert opened == []
    assert isinstance(a, ClusterRequestHandler)
    assert a._cancel_watch is not None
    assert not a._cancel_watch._watches
    assert not a._cancel_watch._runners


@FIXED_ONLY
@pytest.mark.asyncio
async def test_a_cancel_before_the_watch_subscribes_still_stops_the_agent(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch replays from the version the turn started at."""
    monkeypatch.setattr(cancel_watch, 'WATCH_DELAY_SECONDS', 2.0)
    agent = WaitsForCancel()
    a, c = cluster.replicas(agent, count=2)
    opened = _watch_subscriptions(cluster, monkeypatch)
    ctx = call_context()
    task = await start_task(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    await wait_until_stored(cluster, task.id, TaskState.TASK_STATE_WORKING, ctx)
    await asyncio.wait_for(c.on_cancel_task(CancelTaskRequest(id=task.id), ctx), WAIT)
    assert opened == []
    await asyncio.wait_for(agent.cancelled.wait(), WAIT)
    assert opened == [task.id]
