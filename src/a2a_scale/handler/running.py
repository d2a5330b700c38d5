"""The turns whose agent runs on this replica, and their shared records.

A turn runs from the moment it is set up here until the task is saved in a
terminal or interrupted state, or its `ActiveTask` is released. While it
runs, the backend's `RunningTasks` holds a record of it under this replica's
instance id, so that a live replica recovers the task if this one dies.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from a2a.server.cluster import VersionedTaskStore
from a2a.types.a2a_pb2 import TaskStatusUpdateEvent

from a2a_scale.handler.passthrough import PassThroughStore
from a2a_scale.recovery import OwnerContext, RecoveryPolicy, RunningTask
from a2a_scale.tasks import INTERRUPTED_STATES, TERMINAL_STATES

if TYPE_CHECKING:
    from collections.abc import Iterable

    from a2a.server.agent_execution import RequestContext
    from a2a.server.cluster import TaskVersion
    from a2a.server.context import ServerCallContext
    from a2a.server.events import Event
    from a2a.server.owner_resolver import OwnerResolver
    from a2a.types.a2a_pb2 import Task

    from a2a_scale.backend import Backend
    from a2a_scale.recovery import RunningTasks
    from a2a_scale.sdk_compat import ActiveTask


logger = logging.getLogger(__name__)

RESUME_STATE_KEY = 'a2a_scale.resumes'
"""Key of the call-context state that marks a resumed turn.

A turn that recovery started again after the task's replica died runs with
``context.call_context.state[RESUME_STATE_KEY]`` set to how many times the
task was resumed (1 for the first resumption). Other turns lack the key.
"""


def resume_count(context: RequestContext) -> int:
    """How many times the turn an executor runs was resumed; 0 for a new one.

    Args:
        context: The `RequestContext` given to `AgentExecutor.execute`.
    """
    return _resumes_in(context.call_context)


def _resumes_in(call_context: ServerCallContext) -> int:
    # Only a context built inside the replica can mark a resumption.
    if not isinstance(call_context, OwnerContext):
        return 0
    value = call_context.state.get(RESUME_STATE_KEY, 0)
    return value if isinstance(value, int) else 0


def ends_run(task: Task, event: Event | None, prev_version: TaskVersion) -> bool:
    """Whether saving `task` ends the run of its turn.

    A terminal state ends it, and so does an interrupted one announced by a
    status update or given to a new task. A `Task` that repeats an
    interrupted state (the SDK saves one when a follow-up's message joins
    the history, before the agent runs) does not.
    """
    state = task.status.state
    if state in TERMINAL_STATES:
        return True
    if state not in INTERRUPTED_STATES:
        return False
    return isinstance(event, TaskStatusUpdateEvent) or prev_version.is_missing


@dataclass(eq=False)
class Run:
    """One turn running on this replica."""

    active_task: ActiveTask
    call_context: ServerCallContext
    """The context of the request that set the turn up."""
    record: RunningTask | None
    """Its shared record, or `None` when nothing is recorded."""


REMOVAL_DELAY_SECONDS = 0.05
"""How long a stopped turn's record waits to be dropped with others.

The removals of the turns that stop within this time go out in one call
(`RunningTasks.remove_many`). A record left behind a little longer is
harmless: were this replica to die meanwhile, recovery would find the task
finished or parked and leave it.
"""


class RunningTurns:
    """Follows the turns running here and keeps their shared records.

    Costs one record write awaited before each turn's agent starts, and a
    share of one removal call in the background once it stops (see
    `REMOVAL_DELAY_SECONDS`); nothing when `records` is `None`.

    Args:
        records: The backend's records, or `None` to record nothing.
        instance_id: This replica's id.
        owner_resolver: Maps a turn's call context to its task's owner.
        inherited: Records an earlier process left under this replica's id
            (see `Backend.take_inherited_records`).
    """

    def __init__(
        self,
        records: RunningTasks | None,
        *,
        instance_id: str = '',
        owner_resolver: OwnerResolver | None = None,
        inherited: Iterable[RunningTask] = (),
    ) -> None:
        self.records = records if owner_resolver is not None else None
        self.inherited = {record.task_id: record for record in inherited}
        """Records an earlier process left under this id, not yet recovered."""
        self.instance_id = instance_id
        self._owner_resolver = owner_resolver
        self._runs: dict[str, Run] = {}
        self._removing: dict[str, RunningTask] = {}
        """Records to drop with the next removal call, by task."""
        self._removal: asyncio.TimerHandle | None = None
        self._pending: dict[str, asyncio.Task[None]] = {}
        """The removal call under way for each task whose record it drops."""
        self.keep_records = False
        """Set when the replica stops: records of runs that stop stay behind."""

    def task_ids(self) -> list[str]:
        """The tasks whose turn runs here now."""
        return list(self._runs)

    def runs(self) -> list[Run]:
        """The turns running here now."""
        return list(self._runs.values())

    def wrap(self, store: VersionedTaskStore) -> VersionedTaskStore:
        """A store that ends a turn's run when the task is saved past it."""
        return TurnLog(store, self)

    async def started(
        self, active_task: ActiveTask, call_context: ServerCallContext
    ) -> None:
        """Notes a turn set up here; records it before its agent starts.

        A failed write is logged, not raised: the turn runs unrecorded.
        """
        task_id = active_task.task_id
        self.inherited.pop(task_id, None)  # This turn's record replaces it.
        record = None
        if self.records is not None and self._owner_resolver is not None:
            try:
                record = RunningTask(
                    task_id=task_id,
                    owner=self._owner_resolver(call_context),
                    instance_id=self.instance_id,
                    resumes=_resumes_in(call_context),
                )
            except Exception:
                logger.exception('No owner for running task %s: not recorded', task_id)
        self._runs[task_id] = Run(active_task, call_context, record)
        if record is None or self.records is None:
            return
        # A removal not sent yet is dropped: this turn's record replaces it.
        self._removing.pop(task_id, None)
        pending = self._pending.get(task_id)
        if pending is not None:
            # The removal of the task's previous run lands first.
            await asyncio.wait({pending})
        try:
            await self.records.add(record)
        except Exception:
            logger.exception('Recording that task %s runs here failed', task_id)

    def saved(self, task: Task, event: Event | None, prev_version: TaskVersion) -> None:
        """Ends the task's run if this save takes it past its turn."""
        if task.id in self._runs and ends_run(task, event, prev_version):
            self.stop(task.id)

    def released(self, active_task: ActiveTask) -> None:
        """Ends the run of a released `active_task`."""
        run = self._runs.get(active_task.task_id)
        if run is not None and run.active_task is active_task:
            self.stop(active_task.task_id)

    def stop(self, task_id: str) -> Run | None:
        """Ends the task's run here and drops its record in the background."""
        run = self._runs.pop(task_id, None)
        if run is not None and run.record is not None and not self.keep_records:
            self._remove_later(run.record)
        return run

    def forget(self, task_id: str) -> Run | None:
        """Ends the task's run here, leaving its record for recovery."""
        return self._runs.pop(task_id, None)

    def _remove_later(self, record: RunningTask) -> None:
        self._removing[record.task_id] = record
        if self._removal is None:
            self._removal = asyncio.get_running_loop().call_later(
                REMOVAL_DELAY_SECONDS, self._send_removals
            )

    def _send_removals(self) -> None:
        """Sends the removals collected so far, in one call."""
        self._removal = None
        if not self._removing:
            return
        batch = list(self._removing.values())
        self._removing.clear()
        sending = asyncio.create_task(
            self._remove(batch), name=f'running-remove:{len(batch)}'
        )
        for record in batch:
            self._pending[record.task_id] = sending
        sending.add_done_callback(lambda done: self._done(batch, done))

    async def _remove(self, batch: list[RunningTask]) -> None:
        if self.records is None:
            return
        try:
            await self.records.remove_many(
                [(record.task_id, record.instance_id) for record in batch]
            )
        except Exception:
            # Left behind, they are claimed once this replica stops, and
            # recovery then finds the tasks finished or parked: no harm.
            logger.exception(
                'Dropping the running records of %d task(s) failed', len(batch)
            )

    def _done(self, batch: list[RunningTask], sending: asyncio.Task[None]) -> None:
        for record in batch:
            if self._pending.get(record.task_id) is sending:
                del self._pending[record.task_id]

    async def aclose(self) -> None:
        """Sends the removals not sent yet and waits for those under way."""
        if self._removal is not None:
            self._removal.cancel()
        self._send_removals()
        while self._pending:
            await asyncio.wait(set(self._pending.values()))
            # Their done callbacks may not have run yet: drop them here.
            for task_id, removal in list(self._pending.items()):
                if removal.done():
                    del self._pending[task_id]


class TurnLog(PassThroughStore):
    """Wraps the store a replica's runs save through, to see turns end."""

    def __init__(self, store: VersionedTaskStore, turns: RunningTurns) -> None:
        super().__init__(store)
        self._turns = turns

    async def save(
        self,
        task: Task,
        *,
        event: Event | None,
        prev: Task | None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        """Saves, then ends the task's run if the save took it past its turn."""
        version = await self._store.save(
            task, event=event, prev=prev, prev_version=prev_version, context=context
        )
        self._turns.saved(task, event, prev_version)
        return version


@dataclass(frozen=True)
class RecoveryConfig:
    """What a handler needs from its backend to record and recover tasks.

    Attributes:
        policy: ``A2A_SCALE_RECOVERY``.
        max_resumes: ``A2A_SCALE_MAX_RESUMES``.
        reap_after: ``A2A_SCALE_REAP_AFTER``: records of replicas silent for
            this long are claimed.
        records: The backend's running-task records; `None` when the
            backend has none or the policy is ``off`` (nothing is recorded).
        instance_id: This replica's id.
        owner_resolver: The backend's owner resolver.
    """

    policy: RecoveryPolicy = RecoveryPolicy.FAIL
    max_resumes: int = 2
    reap_after: float = 60.0
    records: RunningTasks | None = None
    instance_id: str = ''
    owner_resolver: OwnerResolver | None = None
    inherited: tuple[RunningTask, ...] = ()

    @classmethod
    def of(cls, backend: Backend) -> RecoveryConfig:
        """The configuration of `backend`'s settings and records."""
        settings = backend.settings
        records = (
            backend.running_tasks if settings.recovery != RecoveryPolicy.OFF else None
        )
        return cls(
            policy=settings.recovery,
            max_resumes=settings.max_resumes,
            reap_after=settings.reap_after,
            records=records,
            instance_id=backend.instance_id,
            owner_resolver=backend.owner_resolver,
            inherited=tuple(backend.take_inherited_records()),
        )

    def turns(self) -> RunningTurns:
        """The `RunningTurns` of a handler with this configuration."""
        return RunningTurns(
            self.records,
            instance_id=self.instance_id,
            owner_resolver=self.owner_resolver,
            inherited=self.inherited,
        )
