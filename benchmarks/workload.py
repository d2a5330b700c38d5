"""The data every scenario writes: a realistic task and stamped events.

Each event carries its scenario phase, a sequence number and the wall-clock
time it was sent (``time.time_ns()``), so a reader in another process on the
same host can measure delivery latency and check loss, duplicates and order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

HISTORY = 10
ARTIFACTS = 2
ARTIFACT_BYTES = 1024
OWNER = 'bench'


class BenchUser(User):
    """The one caller of every benchmark."""

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return OWNER


def call_context() -> ServerCallContext:
    """The server call context of the benchmark caller."""
    return ServerCallContext(user=BenchUser())


def _text(n: int, seed: str) -> str:
    return (seed * (n // len(seed) + 1))[:n]


def realistic_task(task_id: str, context_id: str = 'bench-ctx') -> Task:
    """A task with 10 history messages and 2 artifacts of about 1 KB each."""
    task = Task(
        id=task_id,
        context_id=context_id,
        status=TaskStatus(state=TaskState.TASK_STATE_WORKING),
    )
    for i in range(HISTORY):
        task.history.append(
            Message(
                message_id=f'{task_id}-m{i}',
                context_id=context_id,
                task_id=task_id,
                role=Role.ROLE_USER if i % 2 == 0 else Role.ROLE_AGENT,
                parts=[Part(text=_text(160, f'turn {i} of the conversation; '))],
            )
        )
    for i in range(ARTIFACTS):
        task.artifacts.append(
            Artifact(
                artifact_id=f'{task_id}-a{i}',
                name=f'result-{i}',
                parts=[Part(text=_text(ARTIFACT_BYTES, f'artifact {i} body. '))],
            )
        )
    task.status.timestamp.GetCurrentTime()
    return task


@dataclass(frozen=True)
class Stamp:
    """What a reader learns from an event: phase, sequence and send time."""

    phase: str
    seq: int
    sent_ns: int


def stamped_event(task: Task, phase: str, seq: int) -> TaskStatusUpdateEvent:
    """A WORKING status update of `task` stamped with `phase`, `seq` and now.

    The task's status and metadata are updated to match, as the SDK does
    before it saves the event with the task.
    """
    event = TaskStatusUpdateEvent(
        task_id=task.id,
        context_id=task.context_id,
        status=TaskStatus(state=TaskState.TASK_STATE_WORKING),
    )
    event.status.timestamp.GetCurrentTime()
    event.metadata.update({'phase': phase, 'seq': seq, 'sent_ns': str(time.time_ns())})
    task.status.CopyFrom(event.status)
    task.metadata.update({'phase': phase, 'seq': seq})
    return event


def read_stamp(event: object) -> Stamp | None:
    """The stamp of a benchmark event, or `None` for any other event."""
    metadata = getattr(event, 'metadata', None)
    if metadata is None or 'sent_ns' not in metadata:
        return None
    return Stamp(
        phase=str(metadata['phase']),
        seq=int(metadata['seq']),
        sent_ns=int(metadata['sent_ns']),
    )
