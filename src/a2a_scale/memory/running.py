"""`MemoryRunningTasks`: which replica runs which task, in a `MemorySpace`."""

from __future__ import annotations

from a2a_scale.memory.space import MemorySpace
from a2a_scale.recovery import RunningTask, RunningTasks


class MemoryRunningTasks(RunningTasks):
    """The running-task records of a `MemorySpace`, seen from one replica.

    Records live in the space next to the replica registry, so every
    replica of the namespace in the process sees them. Each call holds the
    space's lock for its whole work: a claim decides which replicas are dead
    and removes their records in one step, so concurrent claimers (in any
    event loop or thread) get disjoint records. Nothing can fail half way,
    so no record is ever lost; nothing survives the process either.

    Args:
        space: The shared state.
        instance_id: The id of this replica; its own records are never
            claimed by it.
    """

    def __init__(self, space: MemorySpace, instance_id: str) -> None:
        self.space = space
        self.instance_id = instance_id

    async def add(self, record: RunningTask) -> None:
        """Records that `record.instance_id` runs `record.task_id`."""
        with self.space.lock:
            self.space.running[record.task_id] = record

    async def remove(self, task_id: str, instance_id: str) -> None:
        """Drops the task's record if `instance_id` still holds it."""
        with self.space.lock:
            held = self.space.running.get(task_id)
            if held is not None and held.instance_id == instance_id:
                del self.space.running[task_id]

    async def running(self, instance_id: str | None = None) -> list[RunningTask]:
        """Returns the records of one replica, or of every replica."""
        with self.space.lock:
            return [
                record
                for record in self.space.running.values()
                if instance_id is None or record.instance_id == instance_id
            ]

    async def claim_orphans(self, *, older_than: float) -> list[RunningTask]:
        """Takes the records of replicas silent for `older_than` s or unregistered."""
        with self.space.lock:
            beats = self.space.replicas()
            now = self.space.clock()
            claimed = [
                record
                for record in self.space.running.values()
                if record.instance_id != self.instance_id
                and (
                    record.instance_id not in beats
                    or now - beats[record.instance_id] >= older_than
                )
            ]
            for record in claimed:
                del self.space.running[record.task_id]
            return claimed
