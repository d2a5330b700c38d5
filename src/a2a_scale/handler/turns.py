"""Where a subscription to a task stops: the end of a turn; and serving one."""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING

from a2a.types.a2a_pb2 import Message, Task, TaskStatusUpdateEvent
from a2a.utils.errors import UnsupportedOperationError

from a2a_scale.tasks import INTERRUPTED_STATES, TERMINAL_STATES

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from a2a.server.cluster import TaskEventStream, TaskVersion
    from a2a.server.events import Event
    from a2a.types.a2a_pb2 import TaskStatus

    from a2a_scale.sdk_compat import ActiveTask


def ends_turn(event: object, previous: TaskStatus | None = None) -> bool:
    """Whether a subscription stops after `event`.

    It stops at a Message, a terminal state, or a move into an interrupted
    state. A `Task` that merely repeats the `previous` interrupted state (the
    SDK logs one when it saves a follow-up message into the history; agents
    announce states with status updates) does not end it.
    """
    if isinstance(event, Message):
        return True
    if not isinstance(event, Task | TaskStatusUpdateEvent):
        return False
    state = event.status.state
    if state in TERMINAL_STATES:
        return True
    if state not in INTERRUPTED_STATES:
        return False
    return (
        isinstance(event, TaskStatusUpdateEvent)
        or previous is None
        or state != previous.state
    )


async def tail_shared(
    task_id: str, snapshot: Task, version: TaskVersion, stream: TaskEventStream
) -> AsyncGenerator[Event, None]:
    """Serves the snapshot, then the shared stream until the turn ends.

    The SDK's remote path, except that it does not stop at the history
    save that starts a follow-up turn (see `ends_turn`).
    """
    yield snapshot
    status = snapshot.status
    async with aclosing(stream.subscribe(task_id, after=version)) as events:
        async for versioned in events:
            if not versioned.version.is_after(version):
                continue
            event = versioned.event
            yield event
            if ends_turn(event, status):
                return
            if isinstance(event, Task | TaskStatusUpdateEvent):
                status = event.status


async def tap_running(local: ActiveTask) -> AsyncGenerator[Event, None]:
    """Taps a task running here until its turn ends.

    Yields nothing when the local task is parked (its snapshot is
    interrupted, possibly stale) or already finished.
    """
    async with aclosing(local.subscribe(include_initial_task=True)) as events:
        try:
            first = await anext(events, None)
        except UnsupportedOperationError:
            # Finished between the registry lookup and the tap.
            return
        if first is None or ends_turn(first):
            return
        yield first
        async for event in events:
            yield event
            if ends_turn(event):
                return
