"""Recovery of tasks whose replica died or shut down, under the policy set.

A live replica claims the records of a dead replica's running tasks (see
`a2a_scale.recovery`) and, for each one the store still shows running:

- ``fail`` saves FAILED through the compare-and-set path, publishes it on the
  shared stream and pushes it once;
- ``resume`` sends the task's last user message again on this replica, as
  its owner, through the handler's normal message path; the executor sees
  `RESUME_STATE_KEY` in its call context's state;
- ``off`` records nothing, so there is nothing to claim.

`TaskRecovery.hand_over` applies the policy at once to the turns running on
a replica that shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

from a2a.server.cluster import ConcurrentTaskModificationError, VersionedEvent
from a2a.types.a2a_pb2 import (
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from a2a_scale.handler.running import RESUME_STATE_KEY, RecoveryConfig
from a2a_scale.recovery import OwnerContext, RecoveryPolicy
from a2a_scale.tasks import INTERRUPTED_STATES, TERMINAL_STATES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from a2a.server.cluster import TaskEventStream, VersionedTaskStore
    from a2a.server.context import ServerCallContext

    from a2a_scale.handler.running import Run, RunningTurns
    from a2a_scale.recovery import RunningTask, RunningTasks


logger = logging.getLogger(__name__)

_SAVE_ATTEMPTS = 8
"""Compare-and-set attempts of a recovery write against a moving task."""

_RECOVERY_CONCURRENCY = 16
"""Claimed records a replica recovers at the same time."""

CANCEL_SECONDS = 5.0
"""How long a hand-over lets an executor's ``cancel`` take before it closes the run."""


def agent_message(task: Task, text: str) -> Message:
    """A status message from the agent side about `task`."""
    return Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_AGENT,
        task_id=task.id,
        context_id=task.context_id,
        parts=[Part(text=text)],
    )


async def fail_task(
    store: VersionedTaskStore,
    stream: TaskEventStream | None,
    task_id: str,
    context: ServerCallContext,
    text: str,
) -> TaskStatusUpdateEvent | None:
    """Saves FAILED with the status message `text`, unless the task stopped.

    The write is a compare-and-set against the version read; on a conflict
    the task is read again. Nothing is written when the task is absent,
    terminal or interrupted.

    Returns:
        The FAILED status update saved and published, or `None`.

    Raises:
        ConcurrentTaskModificationError: If every attempt conflicted.
    """
    for attempt in range(_SAVE_ATTEMPTS):
        stored = await store.get(task_id, context)
        if stored is None:
            return None
        task = stored.task
        state = task.status.state
        if state in TERMINAL_STATES or state in INTERRUPTED_STATES:
            return None
        failed = Task()
        failed.CopyFrom(task)
        if failed.status.HasField('message'):
            # As the SDK does: the previous status message joins the history.
            failed.history.append(failed.status.message)
        status = TaskStatus(
            state=TaskState.TASK_STATE_FAILED, message=agent_message(task, text)
        )
        status.timestamp.GetCurrentTime()
        failed.status.CopyFrom(status)
        event = TaskStatusUpdateEvent(
            task_id=task.id, context_id=task.context_id, status=status
        )
        try:
            version = await store.save(
                failed,
                event=event,
                prev=task,
                prev_version=stored.version,
                context=context,
            )
        except ConcurrentTaskModificationError:
            await asyncio.sleep(0.01 * attempt)
            continue
        if stream is not None:
            await stream.publish(task_id, VersionedEvent(event=event, version=version))
        return event
    raise ConcurrentTaskModificationError(
        f'Task {task_id} kept changing; recovery gave up after {_SAVE_ATTEMPTS} '
        'attempts'
    )


class TaskRecovery:
    """Applies the recovery policy for one handler.

    Args:
        config: The policy and the backend's records.
        turns: The handler's running turns.
        store: The handler's task store (its FAILED writes get pushed by
            `settle`).
        stream: The shared event stream, if any.
        settle: Pushes a FAILED or CANCELED the handler wrote, once.
        send: The handler's ``on_message_send``, to resume a task.
    """

    def __init__(
        self,
        config: RecoveryConfig,
        turns: RunningTurns,
        *,
        store: VersionedTaskStore,
        stream: TaskEventStream | None,
        settle: Callable[[str], Awaitable[None]],
        send: Callable[[SendMessageRequest, ServerCallContext], Awaitable[object]],
    ) -> None:
        self.config = config
        self._turns = turns
        self._store = store
        self._stream = stream
        self._settle = settle
        self._send = send
        self._resuming: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- a dead replica's tasks --------------------------------------------------

    async def recover_orphans(self) -> int:
        """Claims the records of dead or stopped replicas and recovers them.

        Returns:
            How many records were claimed.
        """
        records = self.config.records
        if self._closed or records is None or self.config.policy is RecoveryPolicy.OFF:
            return 0
        claimed = await records.claim_orphans(older_than=self.config.reap_after)
        claimed += await self._take_inherited(records)
        if claimed:
            gate = asyncio.Semaphore(_RECOVERY_CONCURRENCY)

            async def recover(record: RunningTask) -> None:
                async with gate:
                    await self._recover(record, records)

            await asyncio.gather(*(recover(record) for record in claimed))
        return len(claimed)

    async def _take_inherited(self, records: RunningTasks) -> list[RunningTask]:
        """Takes the records an earlier process left under this replica's id.

        A task that ran here since this process started is left alone: its
        new turn replaced the old record.
        """
        taken = []
        inherited = self._turns.inherited
        for task_id, record in list(inherited.items()):
            try:
                await records.remove(task_id, record.instance_id)
            except Exception:
                logger.exception('Taking over running task %s failed', task_id)
                continue
            if inherited.pop(task_id, None) is not None:
                taken.append(record)
        return taken

    async def _recover(self, record: RunningTask, records: RunningTasks) -> None:
        try:
            if self.config.policy is RecoveryPolicy.RESUME:
                await self._resume(record)
            else:
                await self._fail(record, _stopped_text(record))
        except Exception:
            logger.exception(
                'Recovering task %s of replica %s failed; it is retried at the '
                'next heartbeat',
                record.task_id,
                record.instance_id,
            )
            try:
                await records.add(record)
            except Exception:
                logger.exception('Recording task %s again failed', record.task_id)

    async def _fail(self, record: RunningTask, text: str) -> None:
        context = OwnerContext.of(record.owner)
        event = await fail_task(
            self._store, self._stream, record.task_id, context, text
        )
        if event is not None:
            logger.info(
                'Task %s of stopped replica %s failed by recovery',
                record.task_id,
                record.instance_id,
            )
            await self._settle(record.task_id)

    async def _resume(self, record: RunningTask) -> None:
        context = OwnerContext.of(record.owner)
        stored = await self._store.get(record.task_id, context)
        if stored is None:
            return
        task = stored.task
        state = task.status.state
        if state in TERMINAL_STATES or state in INTERRUPTED_STATES:
            return
        resumes = record.resumes + 1
        if resumes > self.config.max_resumes:
            await self._fail(
                record,
                f'{_stopped_text(record)} It was already resumed {record.resumes} '
                f'times, the most A2A_SCALE_MAX_RESUMES '
                f'({self.config.max_resumes}) allows.',
            )
            return
        message = _last_user_message(task)
        if message is None:
            await self._fail(
                record,
                f'{_stopped_text(record)} It has no user message to resume from.',
            )
            return
        context.state[RESUME_STATE_KEY] = resumes
        request = SendMessageRequest(
            message=message,
            configuration=SendMessageConfiguration(return_immediately=True),
        )
        logger.info(
            'Resuming task %s of stopped replica %s here (resumption %d)',
            record.task_id,
            record.instance_id,
            resumes,
        )
        runner = asyncio.create_task(
            self._run_resumed(record, request, context),
            name=f'resume:{record.task_id}',
        )
        self._resuming.add(runner)
        runner.add_done_callback(self._resuming.discard)

    async def _run_resumed(
        self,
        record: RunningTask,
        request: SendMessageRequest,
        context: ServerCallContext,
    ) -> None:
        try:
            await self._send(request, context)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception('Resuming task %s failed', record.task_id)
            if self.config.records is not None and not self._closed:
                # Claimed again at the next heartbeat; a task that finished
                # meanwhile is then left alone.
                with contextlib.suppress(Exception):
                    await self.config.records.add(record)

    # -- this replica shutting down ----------------------------------------------

    async def hand_over(self) -> None:
        """Stops every turn running here and applies the policy at once.

        - ``fail``: FAILED is saved, published and pushed here, then the run
          is cancelled like a cancel request (the executor's ``cancel`` is
          called); the stored FAILED makes the SDK write nothing more.
        - ``resume``: the runs are closed without any write and their
          records stay under this replica, for a live replica to claim once
          this one's heartbeat is gone (at backend stop).
        - ``off``: the runs are closed without any write.
        """
        self._closed = True
        self._turns.keep_records = True
        runs = self._turns.runs()
        if self.config.policy is RecoveryPolicy.FAIL:
            await asyncio.gather(*(self._fail_run(run) for run in runs))
        else:
            for run in runs:
                self._turns.forget(run.active_task.task_id)
            await asyncio.gather(
                *(self._close_run(run) for run in runs), return_exceptions=True
            )
        await self._turns.aclose()

    async def _fail_run(self, run: Run) -> None:
        task_id = run.active_task.task_id
        self._turns.forget(task_id)
        text = (
            f'The replica running this task ({self.config.instance_id}) shut '
            'down before it finished.'
        )
        try:
            event = await fail_task(
                self._store, self._stream, task_id, run.call_context, text
            )
        except Exception:
            # The record stays: a live replica fails the task after this one stops.
            logger.exception('Failing task %s at hand-over failed', task_id)
            await self._close_run(run)
            return
        if run.record is not None and self.config.records is not None:
            with contextlib.suppress(Exception):
                await self.config.records.remove(task_id, run.record.instance_id)
        if event is None:
            # Finished or parked meanwhile: a cancel would write CANCELED.
            await self._close_run(run)
            return
        await self._settle(task_id)
        try:
            async with asyncio.timeout(CANCEL_SECONDS):
                await run.active_task.cancel(run.call_context)
        except Exception:
            logger.warning(
                'Cancelling the run of task %s at hand-over failed; closing it',
                task_id,
                exc_info=True,
            )
            await self._close_run(run)

    @staticmethod
    async def _close_run(run: Run) -> None:
        """Stops the run without writing: its agent's coroutine is cancelled."""
        try:
            await run.active_task.aclose()
        except Exception:
            logger.exception(
                'Closing the run of task %s failed', run.active_task.task_id
            )

    async def aclose(self) -> None:
        """Stops recovering: resumptions under way are cancelled.

        Runs still going keep their records, so that live replicas recover
        them once this replica stops.
        """
        self._closed = True
        self._turns.keep_records = True
        runners = list(self._resuming)
        for runner in runners:
            runner.cancel()
        if runners:
            await asyncio.wait(runners)
        await self._turns.aclose()


def _stopped_text(record: RunningTask) -> str:
    return (
        f'The replica running this task ({record.instance_id}) stopped before '
        'it finished.'
    )


def _last_user_message(task: Task) -> Message | None:
    for message in reversed(task.history):
        if message.role == Role.ROLE_USER:
            resent = Message()
            resent.CopyFrom(message)
            resent.task_id = task.id
            resent.context_id = task.context_id
            return resent
    return None
