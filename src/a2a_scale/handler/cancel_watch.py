"""Stops the local run of a task that another replica cancelled."""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from a2a.server.agent_execution.active_task import (
    INTERRUPTED_TASK_STATES,
)
from a2a.types.a2a_pb2 import (
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from a2a_scale.handler.pushes import TerminalWriteLog
from a2a_scale.handler.turns import ends_turn

if TYPE_CHECKING:
    from a2a.server.agent_execution.active_task import ActiveTask
    from a2a.server.cluster import TaskEventStream, TaskVersion
    from a2a.server.events import Event


logger = logging.getLogger(__name__)

_WATCH_RETRY_SECONDS = 1.0
"""Pause before a cancel watch resubscribes after its stream failed."""


@dataclass(eq=False)
class _Watch:
    """One replica's watch over one running task."""

    active_task: ActiveTask
    runner: asyncio.Task[None] | None = None
    renewed: bool = False
    """A new turn was set up here since the watch last saw the task park."""
    cancelling: bool = False


class RemoteCancelWatch:
    """Cancels the local run of a task that another replica cancelled.

    The SDK serves a cancel on a replica that does not run the task by
    writing CANCELED to the shared store; the replica that runs it only
    notices at the agent's next save, which an idle agent may never make.
    While a task runs here, this follows its shared stream from the version
    this replica last knew, and on a CANCELED this replica did not write it
    cancels the run as a local cancel does. Each watch holds one stream
    subscription and one asyncio task, and ends when the task finishes, parks
    in an interrupted state, or is released, and on `aclose`.
    """

    def __init__(self, stream: TaskEventStream, write_log: TerminalWriteLog) -> None:
        self._stream = stream
        self._write_log = write_log
        self._watches: dict[str, _Watch] = {}
        self._runners: set[asyncio.Task[None]] = set()

    def watch(self, active_task: ActiveTask) -> None:
        """Watches `active_task`, or renews its live watch for a new turn."""
        if active_task.is_finished:
            return
        task_id = active_task.task_id
        current = self._watches.get(task_id)
        if current is not None:
            if current.active_task is active_task:
                current.renewed = True
                return
            self._stop(current)
        # The SDK's task manager holds the version and state this replica
        # last read or wrote; its producer is waiting for this request.
        manager = active_task._task_manager
        snapshot = manager._current_task
        watch = _Watch(active_task)
        runner = asyncio.create_task(
            self._run(
                watch,
                manager.current_version,
                snapshot.status if snapshot is not None else None,
            ),
            name=f'cancel-watch:{task_id}',
        )
        watch.runner = runner
        self._watches[task_id] = watch
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

    def release(self, active_task: ActiveTask) -> None:
        """Ends the watch of a released `active_task`, unless it is cancelling."""
        watch = self._watches.get(active_task.task_id)
        if watch is not None and watch.active_task is active_task:
            self._stop(watch)

    async def aclose(self) -> None:
        """Ends every watch and waits for them."""
        self._watches.clear()
        while self._runners:
            runners = list(self._runners)
            for runner in runners:
                runner.cancel()
            await asyncio.gather(*runners, return_exceptions=True)

    def _stop(self, watch: _Watch) -> None:
        self._forget(watch)
        if watch.runner is not None and not watch.cancelling:
            watch.runner.cancel()

    def _forget(self, watch: _Watch) -> None:
        task_id = watch.active_task.task_id
        if self._watches.get(task_id) is watch:
            del self._watches[task_id]

    async def _run(
        self, watch: _Watch, after: TaskVersion, status: TaskStatus | None
    ) -> None:
        task_id = watch.active_task.task_id
        try:
            while not watch.active_task.is_finished:
                try:
                    async with aclosing(
                        self._stream.subscribe(task_id, after=after)
                    ) as events:
                        async for versioned in events:
                            event = versioned.event
                            # Checked before the version: the SDK's SQL store
                            # on SQLite was seen logging a remote CANCELED at
                            # the version of the event before it.
                            if self._cancelled_elsewhere(watch, event):
                                await self._cancel_run(watch)
                                return
                            if not versioned.version.is_after(after):
                                continue
                            after = versioned.version
                            if ends_turn(event, status) and self._ends(watch, event):
                                return
                            if isinstance(event, Task | TaskStatusUpdateEvent):
                                status = event.status
                    return  # The stream ended: the backend is stopping.
                except Exception:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        # The stream turned our cancel into an error.
                        raise asyncio.CancelledError from None
                    logger.warning(
                        'Cancel watch of task %s lost its stream; resubscribing',
                        task_id,
                        exc_info=True,
                    )
                await asyncio.sleep(_WATCH_RETRY_SECONDS)
        finally:
            self._forget(watch)

    def _cancelled_elsewhere(self, watch: _Watch, event: Event) -> bool:
        task_id = watch.active_task.task_id
        return (
            isinstance(event, Task | TaskStatusUpdateEvent)
            and event.status.state == TaskState.TASK_STATE_CANCELED
            and task_id not in self._write_log.cancelling
            and not watch.active_task.is_finished
        )

    def _ends(self, watch: _Watch, event: Event) -> bool:
        """Whether the watch ends at `event`, which ends a turn.

        A park ends it unless a new turn was set up here meanwhile: that
        turn's setup found this watch live and left it to carry on.
        """
        parked = (
            isinstance(event, Task | TaskStatusUpdateEvent)
            and event.status.state in INTERRUPTED_TASK_STATES
        )
        if parked and watch.renewed:
            watch.renewed = False
            return False
        self._forget(watch)
        return True

    async def _cancel_run(self, watch: _Watch) -> None:
        """Cancels the local run like a local cancel, without writing again."""
        watch.cancelling = True
        self._forget(watch)
        active_task = watch.active_task
        logger.info(
            'Task %s was cancelled on another replica; cancelling its run here',
            active_task.task_id,
        )
        try:
            # The executor's cancel is called and the producer cancelled. The
            # CANCELED already stored makes any write of the agent's conflict,
            # the SDK re-reads it and finishes, and nothing is written again.
            await active_task.cancel(active_task._task_manager._call_context)
        except Exception:
            logger.exception(
                'Cancelling the run of task %s here failed', active_task.task_id
            )
