"""A new task is not read from the shared store before its first save.

The SDK reads a task three times while it sets up a new one (the turn, its
producer, its consumer). For an id the handler's builder has just generated
each read can only find nothing; on a shared store each is a round trip.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from a2a.server.agent_execution import SimpleRequestContextBuilder
from a2a.types.a2a_pb2 import TaskState
from handler_support import (
    WAIT,
    Cluster,
    Completes,
    InputThenComplete,
    call_context,
    send_request,
    state_of,
    user_message,
)

from a2a_scale.handler import ClusterRequestHandler

FIXED_ONLY = pytest.mark.parametrize(
    'cluster',
    [('memory', 'fixed'), ('sqlite', 'fixed')],
    ids=['memory-fixed', 'sqlite-fixed'],
    indirect=True,
)

COMPLETED = TaskState.TASK_STATE_COMPLETED


def _spy(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Records ('get' | 'save', task id) for every call on the shared store."""
    assert cluster.shared is not None
    store_class = type(cluster.shared.task_store)
    calls: list[tuple[str, str]] = []
    get, save = store_class.get, store_class.save

    async def spied_get(self: Any, task_id: str, context: Any) -> Any:
        calls.append(('get', task_id))
        return await get(self, task_id, context)

    async def spied_save(self: Any, task: Any, **kwargs: Any) -> Any:
        calls.append(('save', task.id))
        return await save(self, task, **kwargs)

    monkeypatch.setattr(store_class, 'get', spied_get)
    monkeypatch.setattr(store_class, 'save', spied_save)
    return calls


@FIXED_ONLY
@pytest.mark.asyncio
async def test_new_task_is_not_read_before_its_first_save(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a,) = cluster.replicas(Completes(), count=1)
    calls = _spy(cluster, monkeypatch)
    done = await asyncio.wait_for(
        a.on_message_send(send_request(user_message()), call_context()), WAIT
    )
    assert state_of(done) == COMPLETED
    mine = [kind for kind, task_id in calls if task_id == done.id]
    assert mine[0] == 'save', mine
    assert isinstance(a, ClusterRequestHandler)
    assert not len(a._run_log.fresh)


@FIXED_ONLY
@pytest.mark.asyncio
async def test_a_message_naming_its_task_still_reads_it(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = cluster.replicas(InputThenComplete(), count=2)
    ctx = call_context()
    parked = await asyncio.wait_for(
        a.on_message_send(send_request(user_message()), ctx), WAIT
    )
    calls = _spy(cluster, monkeypatch)
    done = await asyncio.wait_for(
        b.on_message_send(
            send_request(user_message(task_id=parked.id, context_id=parked.context_id)),
            ctx,
        ),
        WAIT,
    )
    assert state_of(done) == COMPLETED
    assert calls[0] == ('get', parked.id)


@FIXED_ONLY
@pytest.mark.asyncio
async def test_an_application_builder_keeps_every_read(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another builder might hand out a stored id: its tasks are read."""
    (a,) = cluster.replicas(
        Completes(), count=1, request_context_builder=SimpleRequestContextBuilder()
    )
    calls = _spy(cluster, monkeypatch)
    done = await asyncio.wait_for(
        a.on_message_send(send_request(user_message()), call_context()), WAIT
    )
    assert state_of(done) == COMPLETED
    assert calls[0] == ('get', done.id)
