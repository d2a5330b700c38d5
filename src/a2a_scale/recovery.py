"""Which replica runs which task, so that live replicas recover a dead one's.

A replica records each task from the moment its agent starts until the task
reaches a terminal or interrupted state. When a replica stops heartbeating
for ``A2A_SCALE_REAP_AFTER`` seconds, a live replica claims its records,
exactly once across the cluster, and applies ``A2A_SCALE_RECOVERY``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from a2a.server.context import ServerCallContext
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from collections.abc import Sequence

    from a2a.server.owner_resolver import OwnerResolver


class RecoveryPolicy(StrEnum):
    """What a live replica does with a task whose replica died."""

    FAIL = 'fail'
    """The task moves to FAILED, saying the replica running it stopped."""
    RESUME = 'resume'
    """The agent starts again on the claiming replica, from the stored task."""
    OFF = 'off'
    """Nothing: the task keeps its last state."""


@dataclass(frozen=True)
class RunningTask:
    """The record of a task whose agent runs on a replica.

    Attributes:
        task_id: The task.
        owner: The task's owner, as the owner resolver gave it.
        instance_id: The replica running the agent.
        resumes: How many times the task was already resumed after its
            replica died.
    """

    task_id: str
    owner: str
    instance_id: str
    resumes: int = 0


class RunningTasks(ABC):
    """The shared records of which replica runs which task.

    A record is keyed by its task: recording a task again (on another
    replica, after a resume) replaces the earlier record.
    """

    @abstractmethod
    async def add(self, record: RunningTask) -> None:
        """Records that `record.instance_id` runs `record.task_id`."""

    @abstractmethod
    async def remove(self, task_id: str, instance_id: str) -> None:
        """Drops the task's record if `instance_id` still holds it."""

    async def remove_many(self, records: Sequence[tuple[str, str]]) -> None:
        """Drops each ``(task_id, instance_id)`` record as `remove` does.

        A backend may drop them all in one round trip; this default calls
        `remove` for each, and raises the first error once all were tried.
        """
        errors: list[Exception] = []
        for task_id, instance_id in records:
            try:
                await self.remove(task_id, instance_id)
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    @abstractmethod
    async def running(self, instance_id: str | None = None) -> list[RunningTask]:
        """Returns the records of one replica, or of every replica."""

    @abstractmethod
    async def claim_orphans(self, *, older_than: float) -> list[RunningTask]:
        """Takes the records of replicas that are dead or gone.

        A replica is dead when its last heartbeat is older than `older_than`
        seconds, and gone when it has no heartbeat (it stopped). Each record
        is returned to exactly one caller across the cluster and removed.
        """


class OwnerContext(ServerCallContext):
    """A call context that stands for a task's owner, for recovery.

    Only code in the replica can build one: no request can carry it. The
    backend's owner resolver returns its `owner` unchanged.
    """

    _owner: str = PrivateAttr(default='')

    @classmethod
    def of(cls, owner: str) -> OwnerContext:
        """Returns a context that the backend's stores scope to `owner`."""
        context = cls()
        context._owner = owner
        return context

    @property
    def owner(self) -> str:
        """The owner this context stands for."""
        return self._owner


def owner_aware(resolver: OwnerResolver) -> OwnerResolver:
    """Wraps `resolver` so that an `OwnerContext` resolves to its owner."""
    if getattr(resolver, '__a2a_scale_owner_aware__', False):
        return resolver

    def resolve(context: ServerCallContext) -> str:
        if isinstance(context, OwnerContext):
            return context.owner
        return resolver(context)

    resolve.__a2a_scale_owner_aware__ = True  # type: ignore[attr-defined]
    resolve.__wrapped__ = resolver  # type: ignore[attr-defined]
    return resolve
