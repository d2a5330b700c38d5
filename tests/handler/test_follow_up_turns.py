"""Follow-ups of a parked task, on the replica holding it and on another.

Two defects once came with the remote-cancel watch: a follow-up to a parked
task cancelled elsewhere got the CANCELED task back instead of the SDK's
terminal-state error, and over the SDK's own SQL stores the user message of
a turn sent to another replica went missing from the history. A follow-up
that finds another turn running waits for it, within ``follow_up_wait``.
"""

from __future__ import annotations

import asyncio

import pytest
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import InvalidParamsError, UnsupportedOperationError
from handler_support import (
    WAIT,
    Cluster,
    InputThenComplete,
    call_context,
    send_request,
    state_of,
    user_message,
)
from test_follow_up_race import AsksAgain

from a2a_scale.errors import FollowUpTimeoutError

CANCELED = TaskState.TASK_STATE_CANCELED
INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED


async def _parked(handler, ctx) -> Task:  # type: ignore[no-untyped-def]
    task = await asyncio.wait_for(
        handler.on_message_send(send_request(user_message('start')), ctx), WAIT
    )
    assert isinstance(task, Task)
    assert task.status.state == INPUT_REQUIRED
    return task


@pytest.mark.asyncio
async def test_follow_up_to_a_task_cancelled_elsewhere_gets_the_terminal_error(
    cluster: Cluster,
) -> None:
    """The replica holding the parked task refuses it like any other would."""
    a, b = cluster.replicas(InputThenComplete())
    ctx = call_context()
    parked = await _parked(a, ctx)
    cancelled = await asyncio.wait_for(
        b.on_cancel_task(CancelTaskRequest(id=parked.id), ctx), WAIT
    )
    assert state_of(cancelled) == CANCELED

    follow_up = user_message('late', task_id=parked.id, context_id=parked.context_id)
    with pytest.raises(UnsupportedOperationError, match='terminal state'):
        await asyncio.wait_for(a.on_message_send(send_request(follow_up), ctx), WAIT)
    stored = await b.on_get_task(GetTaskRequest(id=parked.id), ctx)
    assert state_of(stored) == CANCELED


@pytest.mark.asyncio
async def test_each_turn_keeps_its_user_message_whichever_replica_serves_it(
    cluster: Cluster,
) -> None:
    """Turns alternate between replicas; every user message is in the history."""
    a, b = cluster.replicas(AsksAgain())
    ctx = call_context()
    parked = await _parked(a, ctx)
    sent = []
    for turn, handler in enumerate((b, a, b, a)):
        message = user_message(
            f'turn {turn}', task_id=parked.id, context_id=parked.context_id
        )
        sent.append(message.message_id)
        result = await asyncio.wait_for(
            handler.on_message_send(send_request(message), ctx), WAIT
        )
        assert state_of(result) == INPUT_REQUIRED
        assert isinstance(result, Task)
        assert message.message_id in {m.message_id for m in result.history}, turn
    stored = await a.on_get_task(GetTaskRequest(id=parked.id), ctx)
    assert isinstance(stored, Task)
    history = [m.message_id for m in stored.history]
    assert [m for m in history if m in sent] == sent


class HoldsTurns(AgentExecutor):
    """Parks at once; each follow-up works until `release` is set, then parks."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.shown: list[int] = []

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = str(context.task_id), str(context.context_id)
        updater = TaskUpdater(event_queue, task_id, context_id)
        if context.current_task is None:
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                )
            )
        else:
            self.shown.append(len(context.current_task.history))
            await updater.start_work()
            self.holding.set()
            await self.release.wait()
        await updater.requires_input(updater.new_agent_message([Part(text='more?')]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


FIXED_ONLY = pytest.mark.parametrize(
    'cluster',
    [('memory', 'fixed'), ('sqlite', 'fixed')],
    ids=['memory-fixed', 'sqlite-fixed'],
    indirect=True,
)


def _follow_up(parked: Task, text: str) -> Message:
    return user_message(text, task_id=parked.id, context_id=parked.context_id)


@FIXED_ONLY
@pytest.mark.asyncio
async def test_a_follow_up_waits_for_the_running_turn_then_applies(
    cluster: Cluster,
) -> None:
    agent = HoldsTurns()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    parked = await _parked(a, ctx)
    first, second = _follow_up(parked, 'one'), _follow_up(parked, 'two')
    running = asyncio.ensure_future(a.on_message_send(send_request(first), ctx))
    await asyncio.wait_for(agent.holding.wait(), WAIT)
    waiting = asyncio.ensure_future(b.on_message_send(send_request(second), ctx))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    assert len(agent.shown) == 1  # The second follow-up's turn has not started.
    agent.release.set()
    done = await asyncio.wait_for(asyncio.gather(running, waiting), WAIT)
    assert [state_of(r) for r in done] == [INPUT_REQUIRED, INPUT_REQUIRED]
    # The second turn ran after the first, shown its messages.
    assert agent.shown[0] < agent.shown[1]
    stored = await a.on_get_task(GetTaskRequest(id=parked.id), ctx)
    assert isinstance(stored, Task)
    ids = [m.message_id for m in stored.history]
    assert ids.index(first.message_id) < ids.index(second.message_id)


@FIXED_ONLY
@pytest.mark.asyncio
async def test_a_follow_up_that_waits_too_long_is_refused_and_not_applied(
    cluster: Cluster,
) -> None:
    agent = HoldsTurns()
    a, b = cluster.replicas(agent, follow_up_wait=0.3)
    ctx = call_context()
    parked = await _parked(a, ctx)
    first, late = _follow_up(parked, 'one'), _follow_up(parked, 'late')
    running = asyncio.ensure_future(a.on_message_send(send_request(first), ctx))
    await asyncio.wait_for(agent.holding.wait(), WAIT)
    with pytest.raises(FollowUpTimeoutError, match=r'follow_up_wait limit of 0\.3 s'):
        await asyncio.wait_for(b.on_message_send(send_request(late), ctx), WAIT)
    agent.release.set()
    await asyncio.wait_for(running, WAIT)
    stored = await a.on_get_task(GetTaskRequest(id=parked.id), ctx)
    assert isinstance(stored, Task)
    assert late.message_id not in {m.message_id for m in stored.history}


@FIXED_ONLY
@pytest.mark.asyncio
async def test_a_follow_up_the_sdk_refuses_leaves_the_task_parked(
    cluster: Cluster,
) -> None:
    """A claim whose agent never starts is undone: the task waits as before."""

    async def refuse(url: str) -> bool:
        return False

    agent = HoldsTurns()
    agent.release.set()
    (a,) = cluster.replicas(agent, count=1, push_url_validator=refuse)
    ctx = call_context()
    parked = await _parked(a, ctx)
    refused = send_request(_follow_up(parked, 'refused'))
    refused.configuration.task_push_notification_config.url = 'http://127.0.0.1:9/'
    with pytest.raises(InvalidParamsError):
        await asyncio.wait_for(a.on_message_send(refused, ctx), WAIT)
    stored = await a.on_get_task(GetTaskRequest(id=parked.id), ctx)
    assert state_of(stored) == INPUT_REQUIRED
    assert isinstance(stored, Task)
    assert refused.message.message_id not in {m.message_id for m in stored.history}
    assert stored.status.message.parts[0].text == 'more?'

    accepted = _follow_up(parked, 'accepted')
    done = await asyncio.wait_for(a.on_message_send(send_request(accepted), ctx), WAIT)
    assert state_of(done) == INPUT_REQUIRED
