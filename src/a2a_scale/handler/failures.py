"""A task whose update can never be saved ends FAILED instead of stranded.

When a store refuses an agent's update for a reason retrying cannot fix (a
payload over a backend limit, corrupt stored data), the SDK's consumer fails
and tries to write FAILED from the task it holds in memory, which still
carries the refused change: that write is refused too, and the task stays
in its last saved state on every replica for ever. Here the first refusal
writes FAILED from the task as stored, with the reason (which names the
limit, never the payload) as its status message; the SDK then finds the
task finished and stops, and the client gets the original error.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    VersionedEvent,
    VersionedTaskStore,
)
from a2a.types.a2a_pb2 import (
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from a2a_scale.errors import PermanentStoreError
from a2a_scale.handler.passthrough import PassThroughStore
from a2a_scale.tasks import TERMINAL_STATES

if TYPE_CHECKING:
    from a2a.server.cluster import TaskEventStream, TaskVersion
    from a2a.server.context import ServerCallContext
    from a2a.server.events import Event

logger = logging.getLogger(__name__)

_ATTEMPTS = 5
"""Compare-and-set attempts at writing FAILED while other writers move on."""


class FailOnPermanentError(PassThroughStore):
    """The store running tasks save through: a permanent refusal fails the task.

    Args:
        store: The store it wraps.
        stream: The shared event stream, if any; the FAILED is published to it.
    """

    def __init__(
        self, store: VersionedTaskStore, stream: TaskEventStream | None
    ) -> None:
        super().__init__(store)
        self._stream = stream

    async def save(
        self,
        task: Task,
        *,
        event: Event | None,
        prev: Task | None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        """Saves; on a permanent refusal, writes FAILED and raises the refusal.

        Raises:
            PermanentStoreError: The refusal, once FAILED is written.
            ConcurrentTaskModificationError: The task was already terminal
                (for example the FAILED written for an earlier refusal), so
                the SDK reloads it and stops.
        """
        try:
            return await self._store.save(
                task, event=event, prev=prev, prev_version=prev_version, context=context
            )
        except PermanentStoreError as error:
            if await self._fail(task.id, error, context):
                raise ConcurrentTaskModificationError(task.id) from error
            raise

    async def _fail(
        self, task_id: str, error: PermanentStoreError, context: ServerCallContext
    ) -> bool:
        """Writes FAILED for `error`; returns whether the task was already terminal."""
        for _ in range(_ATTEMPTS):
            try:
                stored = await self._store.get(task_id, context)
            except PermanentStoreError:
                logger.exception(
                    'Task %s cannot be read to record its failure', task_id
                )
                return False
            if stored is None:
                return False
            if stored.task.status.state in TERMINAL_STATES:
                return True
            failed, update = _failed(stored.task, error)
            try:
                version = await self._store.save(
                    failed,
                    event=update,
                    prev=stored.task,
                    prev_version=stored.version,
                    context=context,
                )
            except ConcurrentTaskModificationError:
                continue
            except PermanentStoreError:
                logger.exception('The failure of task %s cannot be recorded', task_id)
                return False
            logger.warning(
                'Task %s failed: a store refused its update for good (%s)',
                task_id,
                type(error).__name__,
            )
            if self._stream is not None:
                try:
                    await self._stream.publish(
                        task_id, VersionedEvent(event=update, version=version)
                    )
                except Exception:
                    # The backend logged it with the save: it stands.
                    logger.warning(
                        'Publishing the failure of task %s failed',
                        task_id,
                        exc_info=True,
                    )
            return False
        return False


def _failed(
    task: Task, error: PermanentStoreError
) -> tuple[Task, TaskStatusUpdateEvent]:
    """`task` moved to FAILED with `error` as its status message, and the event."""
    failed = Task()
    failed.CopyFrom(task)
    if failed.status.HasField('message'):
        failed.history.append(failed.status.message)
    reason = Message(
        message_id=f'a2a-scale-failed-{task.id}',
        role=Role.ROLE_AGENT,
        task_id=task.id,
        context_id=task.context_id,
        parts=[Part(text=f'The task failed: its update cannot be saved. {error}')],
    )
    status = TaskStatus(state=TaskState.TASK_STATE_FAILED, message=reason)
    status.timestamp.FromDatetime(datetime.now(UTC))
    failed.status.CopyFrom(status)
    update = TaskStatusUpdateEvent(
        task_id=task.id, context_id=task.context_id, status=status
    )
    return failed, update
