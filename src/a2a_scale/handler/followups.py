"""One follow-up at a time per task, across replicas: no user turn is lost.

The SDK runs the agent for every follow-up it receives and saves the user's
message only at the agent's first event. When two replicas receive
follow-ups for the same parked task at once, both agents run from the same
stored task; the loser of the compare-and-set retries its save once and then
fails, and its user's message is gone. Here a follow-up first claims the
task's turn with a compare-and-set of its own, before any agent runs: the
message goes into the history and the task moves to WORKING. A follow-up
that finds the turn taken (the task WORKING, or another claim won the race)
waits, re-reading the task with jittered backoff, until the task is
interrupted again and claims it then, as the SDK queues a second message to
a task running in the same process. The agent still sees the task as it was
before the claim.
"""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from a2a.server.agent_execution import AgentExecutor
from a2a.server.cluster import ConcurrentTaskModificationError, VersionedEvent
from a2a.types.a2a_pb2 import Task, TaskState, TaskStatus, TaskStatusUpdateEvent
from a2a.utils.errors import UnsupportedOperationError

from a2a_scale.errors import FollowUpTimeoutError
from a2a_scale.settings import ScaleSettings
from a2a_scale.tasks import INTERRUPTED_STATES, TERMINAL_STATES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from a2a.server.agent_execution import RequestContext
    from a2a.server.cluster import TaskEventStream, TaskVersion, VersionedTaskStore
    from a2a.server.context import ServerCallContext
    from a2a.server.events import Event, EventQueue
    from a2a.types.a2a_pb2 import SendMessageRequest

logger = logging.getLogger(__name__)

DEFAULT_FOLLOW_UP_WAIT: float = ScaleSettings.model_fields['follow_up_wait'].default
"""Seconds a follow-up waits for its task to accept it before it is refused."""

_FIRST_PAUSE = 0.01
_MAX_PAUSE = 0.5


def terminal_state_error(task: Task) -> UnsupportedOperationError:
    """The SDK's error for a message to a task in a terminal state."""
    return UnsupportedOperationError(
        message=f'Task {task.id} is in terminal state: '
        f'{TaskState.Name(task.status.state)}'
    )


@dataclass
class _Claim:
    """A turn this replica claimed for one follow-up."""

    before: Task
    """The task as stored just before the claim: what the agent is shown."""
    version: TaskVersion
    """The version the claim was saved at."""
    claimed: Task
    started: bool = False
    """Whether the agent was started for it."""


class FollowUpTurns:
    """Claims the turn of each follow-up before the SDK runs the agent.

    Args:
        store: The store the handler's tasks read and save through.
        stream: The shared event stream, if any; a claim is published to it.
        wait: Seconds a follow-up waits for its task to accept a message.
    """

    def __init__(
        self,
        store: VersionedTaskStore,
        stream: TaskEventStream | None,
        *,
        wait: float = DEFAULT_FOLLOW_UP_WAIT,
    ) -> None:
        if wait <= 0:
            raise ValueError('follow_up_wait must be greater than 0.')
        self._store = store
        self._stream = stream
        self._wait = wait
        self._claims: dict[tuple[str, str], _Claim] = {}

    def executor(self, agent: AgentExecutor) -> AgentExecutor:
        """Wraps `agent` so a claimed turn shows it the task as before the claim."""
        return _ClaimAwareExecutor(agent, self)

    @asynccontextmanager
    async def turn(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncIterator[None]:
        """Claims the turn of a follow-up for the duration of the block.

        A message that names no task (a new task) or an unknown one passes
        through: the SDK handles it. If the block fails before the agent
        started, the claim is undone.

        Raises:
            UnsupportedOperationError: The task is in a terminal state (the
                SDK's error).
            FollowUpTimeoutError: The task did not accept the message within
                the wait.
        """
        message = params.message
        if not message.task_id:
            yield
            return
        key = (message.task_id, message.message_id)
        claim = await self._claim(params, context)
        if claim is None:
            yield
            return
        self._claims[key] = claim
        try:
            yield
        except BaseException:
            if not claim.started:
                await asyncio.shield(self._undo(claim, context))
            raise
        finally:
            self._claims.pop(key, None)

    def started(self, context: RequestContext) -> Task | None:
        """Marks the claim of `context` started; returns the task before it."""
        message = context.message
        if message is None or context.task_id is None:
            return None
        claim = self._claims.get((context.task_id, message.message_id))
        if claim is None or claim.started:
            return None
        claim.started = True
        before = Task()
        before.CopyFrom(claim.before)
        return before

    async def _claim(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> _Claim | None:
        message = params.message
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        pause = _FIRST_PAUSE
        while True:
            stored = await self._store.get(message.task_id, context)
            if stored is None:
                return None  # The SDK refuses an unknown task itself.
            task = stored.task
            state = task.status.state
            if state in TERMINAL_STATES:
                raise terminal_state_error(task)
            if any(m.message_id == message.message_id for m in task.history) or (
                message.context_id and message.context_id != task.context_id
            ):
                return None  # Already applied, or refused by the SDK: its case.
            if state in INTERRUPTED_STATES:
                claimed = _claimed(task, params)
                try:
                    version = await self._store.save(
                        claimed,
                        event=_copy(claimed),
                        prev=task,
                        prev_version=stored.version,
                        context=context,
                    )
                except ConcurrentTaskModificationError:
                    # Another writer moved it: read it again soon.
                    if loop.time() < deadline:
                        await asyncio.sleep(_FIRST_PAUSE * random.random())  # noqa: S311
                        continue
                    raise FollowUpTimeoutError(
                        task.id, state=TaskState.Name(state), waited=self._wait
                    ) from None
                await self._publish(task.id, _copy(claimed), version)
                return _Claim(before=task, version=version, claimed=claimed)
            # Its turn is taken: wait for the task to be interrupted again.
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise FollowUpTimeoutError(
                    task.id, state=TaskState.Name(state), waited=self._wait
                )
            await asyncio.sleep(min(remaining, pause * random.uniform(0.5, 1.5)))  # noqa: S311
            pause = min(pause * 2, _MAX_PAUSE)

    async def _undo(self, claim: _Claim, context: ServerCallContext) -> None:
        """Puts the task back as before a claim whose agent never started."""
        restored = _copy(claim.before)
        event = TaskStatusUpdateEvent(
            task_id=restored.id,
            context_id=restored.context_id,
            status=restored.status,
        )
        try:
            version = await self._store.save(
                restored,
                event=event,
                prev=claim.claimed,
                prev_version=claim.version,
                context=context,
            )
        except ConcurrentTaskModificationError:
            return  # Moved on since: leave it to whoever moved it.
        except Exception:
            logger.exception(
                'Undoing the claim of a follow-up of task %s failed', restored.id
            )
            return
        await self._publish(restored.id, event, version)

    async def _publish(self, task_id: str, event: Event, version: TaskVersion) -> None:
        """Publishes a saved event, as the SDK does after its own writes.

        Backends log an event with the save, so a failed publish is logged
        and left: the save stands.
        """
        if self._stream is None:
            return
        try:
            await self._stream.publish(
                task_id, VersionedEvent(event=event, version=version)
            )
        except Exception:
            logger.warning(
                'Publishing an event of task %s failed', task_id, exc_info=True
            )


class _ClaimAwareExecutor(AgentExecutor):
    """The agent, shown the task as before the claim of its turn."""

    def __init__(self, agent: AgentExecutor, turns: FollowUpTurns) -> None:
        self.agent = agent
        self._turns = turns

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Runs the agent; a claimed turn's task reads as before the claim."""
        before = self._turns.started(context)
        if before is not None:
            context.current_task = before
        await self.agent.execute(context, event_queue)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancels the agent."""
        await self.agent.cancel(context, event_queue)


def _copy(task: Task) -> Task:
    copied = Task()
    copied.CopyFrom(task)
    return copied


def _claimed(task: Task, params: SendMessageRequest) -> Task:
    """`task` with the follow-up in its history, as the SDK saves it, and WORKING.

    As the SDK does when it saves a follow-up, the status message (the
    agent's question) moves into the history ahead of the user's message.
    """
    claimed = _copy(task)
    if claimed.status.HasField('message'):
        claimed.history.append(claimed.status.message)
    message = params.message
    claimed.history.append(message)
    claimed.status.CopyFrom(TaskStatus(state=TaskState.TASK_STATE_WORKING))
    claimed.status.timestamp.FromDatetime(datetime.now(UTC))
    return claimed
