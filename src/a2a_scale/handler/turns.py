"""Where a subscription to a task stops: the end of a turn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from a2a.types.a2a_pb2 import Message, Task, TaskStatusUpdateEvent

from a2a_scale.tasks import INTERRUPTED_STATES, TERMINAL_STATES

if TYPE_CHECKING:
    from a2a.types.a2a_pb2 import TaskStatus


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
