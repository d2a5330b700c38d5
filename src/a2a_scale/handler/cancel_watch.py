"""Stops the local run of a task that another replica cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from a2a.server.cluster import TaskVersion, VersionedTaskStore
from a2a.types.a2a_pb2 import (
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from a2a_scale.errors import EventGapError
from a2a_scale.handler.fresh import FreshTaskIds
from a2a_scale.handler.passthrough import PassThroughStore
from a2a_scale.handler.turns import ends_turn
from a2a_scale.tasks import INTERRUPTED_STATES

if TYPE_CHECKING:
    from collections.abc import Callable

    from a2a.server.cluster import StoredTask, TaskEventStream
    from a2a.server.context import ServerCallContext
    from a2a.server.events import Event

    from a2a_scale.sdk_compat import ActiveTask


logger = logging.getLogger(__name__)

_WATCH_RETRY_SECONDS = 1.0
"""Pause before a cancel watch resubscribes after its stream failed."""

WATCH_DELAY_SECONDS = 0.1
"""How long a turn runs without a save here before its cancel watch subscribes.

A save of the running agent meets a remote CANCELED itself (the version
check fails, the SDK reads the CANCELED and stops the run), so only an agent
that stays quiet needs the watch; quick turns never pay for a subscription.
A cancel written meanwhile is not missed: the watch replays the task's
stream from the version known when the turn was set up.
"""

_SEEN_MEMORY = 10_000
"""How many tasks a replica remembers the last read or written version of."""

Seen = tuple[TaskVersion, 'TaskState | None']
"""A task's version and state as last read or written here (None: absent)."""


class RunLog(PassThroughStore):
    """The store the tasks running on this replica read and save through.

    It notes the CANCELED states this replica writes, so its cancel watch
    never mistakes them for remote cancels, and the version and state each
    task was last read or saved at, where a new turn's watch starts. A task
    whose id was generated here and that was never saved reads as absent
    without a store read (see `a2a_scale.handler.fresh`).
    """

    def __init__(self, store: VersionedTaskStore) -> None:
        super().__init__(store)
        self._seen: OrderedDict[str, Seen] = OrderedDict()
        self.cancelling: set[str] = set()
        """Tasks this replica writes (or wrote) CANCELED for, noted before the write."""
        self.fresh = FreshTaskIds()
        """Ids generated here for new tasks not saved yet: read as absent."""
        self.on_save: Callable[[str], None] | None = None
        """Called with the task id after each save through this log."""

    def seen(self, task_id: str) -> Seen | None:
        """The version and state `task_id` was last read or saved at here."""
        return self._seen.get(task_id)

    def _note(self, task_id: str, seen: Seen) -> None:
        known = self._seen.get(task_id)
        version = seen[0]
        if known is not None and not version.is_missing and known[0].is_after(version):
            return  # A read that raced a later save.
        self._seen[task_id] = seen
        self._seen.move_to_end(task_id)
        while len(self._seen) > _SEEN_MEMORY:
            self._seen.popitem(last=False)

    async def save(
        self,
        task: Task,
        *,
        event: Event | None,
        prev: Task | None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        """Saves, noting a CANCELED before the write and the version after."""
        if task.status.state == TaskState.TASK_STATE_CANCELED:
            # Noted before the write reaches the shared log, so this
            # replica's cancel watch never mistakes it for a remote cancel.
            self.cancelling.add(task.id)
        self.fresh.discard(task.id)
        version = await self._store.save(
            task, event=event, prev=prev, prev_version=prev_version, context=context
        )
        self._note(task.id, (version, task.status.state))
        if self.on_save is not None:
            self.on_save(task.id)
        return version

    async def get(self, task_id: str, context: ServerCallContext) -> StoredTask | None:
        """Reads, noting the version read; a fresh id is absent without a read."""
        if task_id in self.fresh:
            self._note(task_id, (TaskVersion.MISSING, None))
            return None
        stored = await self._store.get(task_id, context)
        if stored is None:
            self._note(task_id, (TaskVersion.MISSING, None))
        else:
            self._note(task_id, (stored.version, stored.task.status.state))
        return stored


@dataclass(eq=False)
class _Watch:
    """One replica's watch over one running task."""

    active_task: ActiveTask
    call_context: ServerCallContext
    runner: asyncio.Task[None] | None = None
    seen: Seen | None = None
    """The version and state known when the turn was set up."""
    timer: asyncio.TimerHandle | None = None
    """Starts the runner once the turn was quiet for `WATCH_DELAY_SECONDS`."""
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
    subscription and one asyncio task, from `WATCH_DELAY_SECONDS` after the
    turn starts (quick turns never subscribe), and ends when the task
    finishes, parks in an interrupted state, or is released, and on `aclose`.
    """

    def __init__(
        self,
        stream: TaskEventStream,
        run_log: RunLog,
        *,
        delay: float | None = None,
    ) -> None:
        self._stream = stream
        self._run_log = run_log
        self._delay = WATCH_DELAY_SECONDS if delay is None else delay
        run_log.on_save = self._saved
        self._watches: dict[str, _Watch] = {}
        self._runners: set[asyncio.Task[None]] = set()

    def watch(self, active_task: ActiveTask, call_context: ServerCallContext) -> None:
        """Watches `active_task`, or renews its live watch for a new turn.

        Args:
            active_task: The task a turn was just set up for.
            call_context: The context of the request that set up the turn.
        """
        if active_task.is_finished:
            return
        task_id = active_task.task_id
        current = self._watches.get(task_id)
        if current is not None:
            if current.active_task is active_task:
                current.renewed = True
                current.call_context = call_context
                return
            self._stop(current)
        # The run log holds the version and state this replica's task last
        # read or wrote; its producer is waiting for this request.
        watch = _Watch(active_task, call_context, seen=self._run_log.seen(task_id))
        self._watches[task_id] = watch
        if self._delay > 0:
            watch.timer = asyncio.get_running_loop().call_later(
                self._delay, self._start, watch
            )
        else:
            self._start(watch)

    def _saved(self, task_id: str) -> None:
        """Puts off the start of the task's watch: its agent just saved."""
        watch = self._watches.get(task_id)
        if watch is not None and watch.timer is not None:
            watch.timer.cancel()
            watch.timer = asyncio.get_running_loop().call_later(
                self._delay, self._start, watch
            )

    def _start(self, watch: _Watch) -> None:
        """Starts the runner of `watch`, unless it ended meanwhile."""
        watch.timer = None
        task_id = watch.active_task.task_id
        if self._watches.get(task_id) is not watch:
            return
        if watch.active_task.is_finished:
            self._forget(watch)
            return
        runner = asyncio.create_task(
            self._run(watch, watch.seen), name=f'cancel-watch:{task_id}'
        )
        watch.runner = runner
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

    def release(self, active_task: ActiveTask) -> None:
        """Ends the watch of a released `active_task`, unless it is cancelling."""
        watch = self._watches.get(active_task.task_id)
        if watch is not None and watch.active_task is active_task:
            self._stop(watch)

    async def aclose(self) -> None:
        """Ends every watch and waits for them.

        Each runner is cancelled once. A runner already stopping may be inside
        its stream's cleanup, and a second cancel there can strand a database
        connection: SQLAlchemy's aiosqlite driver then force-closes it and
        leaves its graceful close waiting forever. A cancel of this wait is
        not passed on to the runners either.
        """
        for watch in self._watches.values():
            if watch.timer is not None:
                watch.timer.cancel()
        self._watches.clear()
        while self._runners:
            runners = list(self._runners)
            for runner in runners:
                if not runner.cancelling():
                    runner.cancel()
            await asyncio.wait(runners)
            # Their done callbacks may not have run yet: drop them here.
            self._runners.difference_update(runners)
            for runner in runners:
                if not runner.cancelled():
                    runner.exception()  # Retrieved: a failed watch has ended.

    def _stop(self, watch: _Watch) -> None:
        self._forget(watch)
        if watch.timer is not None:
            watch.timer.cancel()
            watch.timer = None
        runner = watch.runner
        if runner is not None and not watch.cancelling and not runner.cancelling():
            runner.cancel()

    def _forget(self, watch: _Watch) -> None:
        task_id = watch.active_task.task_id
        if self._watches.get(task_id) is watch:
            del self._watches[task_id]

    async def _run(self, watch: _Watch, seen: Seen | None) -> None:
        task_id = watch.active_task.task_id
        try:
            if seen is None:
                # Forgotten (more tasks than the run log remembers): read it.
                await self._run_log.get(task_id, watch.call_context)
                seen = self._run_log.seen(task_id) or (TaskVersion.MISSING, None)
            after, state = seen
            status = TaskStatus(state=state) if state is not None else None
            if status is not None and self._cancelled_elsewhere(watch, status):
                await self._cancel_run(watch)
                return
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
                            if isinstance(
                                event, Task | TaskStatusUpdateEvent
                            ) and self._cancelled_elsewhere(watch, event.status):
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
                except EventGapError:
                    # Behind the retained log, or the task was deleted: go on
                    # from the task as stored now.
                    await self._run_log.get(task_id, watch.call_context)
                    after, state = self._run_log.seen(task_id) or (after, None)
                    if state is None:
                        return
                    status = TaskStatus(state=state)
                    if self._cancelled_elsewhere(watch, status):
                        await self._cancel_run(watch)
                        return
                    continue
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

    def _cancelled_elsewhere(self, watch: _Watch, status: TaskStatus) -> bool:
        task_id = watch.active_task.task_id
        return (
            status.state == TaskState.TASK_STATE_CANCELED
            and task_id not in self._run_log.cancelling
            and not watch.active_task.is_finished
        )

    def _ends(self, watch: _Watch, event: Event) -> bool:
        """Whether the watch ends at `event`, which ends a turn.

        A park ends it unless a new turn was set up here meanwhile: that
        turn's setup found this watch live and left it to carry on.
        """
        parked = (
            isinstance(event, Task | TaskStatusUpdateEvent)
            and event.status.state in INTERRUPTED_STATES
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
            await active_task.cancel(watch.call_context)
        except Exception:
            logger.exception(
                'Cancelling the run of task %s here failed', active_task.task_id
            )
