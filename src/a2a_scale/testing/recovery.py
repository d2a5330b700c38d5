"""Conformance of `Backend.running_tasks`: the records recovery relies on.

The contract:

- `add` records a task under a replica; adding the same task again (from
  any replica) replaces the earlier record. `remove(task, instance)` drops
  the record only if that instance still holds it.
- `claim_orphans(older_than=S)` returns the records of replicas whose last
  heartbeat is at least S seconds old, or that have no heartbeat at all (a
  stopped replica, or one the reaper removed), never the caller's own, and
  removes them. Each record goes to exactly one of any number of
  concurrent claimers, with its owner and resume count.
- A replica's heartbeat exists from the end of its `start()`, so the records
  of a live replica are never claimed.
- A fault never loses a record: a claim that fails, or whose reply is lost,
  leaves what it took to a later claim (its own, or another replica's once
  it stopped); at worst a record is returned twice.

Every first-party backend implements it; a third-party backend whose
`running_tasks` is None skips these tests, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import TYPE_CHECKING, ClassVar

import pytest

from a2a_scale.recovery import RunningTask
from a2a_scale.testing.base import ALICE, BOB, BackendFactory
from a2a_scale.testing.faults import Fault, FaultPlan
from a2a_scale.testing.helpers import new_id

if TYPE_CHECKING:
    from a2a_scale.backend import Backend
    from a2a_scale.recovery import RunningTasks

_FIRST_PARTY = frozenset(
    {'a2a_scale', 'a2a_scale_aws', 'a2a_scale_postgres', 'a2a_scale_redis'}
)
HOUR = 3600.0


def running_tasks(backend: Backend) -> RunningTasks:
    """Returns `backend.running_tasks`; skips (or fails, first-party) if None."""
    tasks = backend.running_tasks
    if tasks is not None:
        return tasks
    package = type(backend).__module__.partition('.')[0]
    if package in _FIRST_PARTY:
        pytest.fail(f'{type(backend).__name__}.running_tasks is None')
    pytest.skip(
        f'{type(backend).__name__} has no running_tasks: the backend cannot '
        'recover the tasks of a dead replica'
    )


def records(instance_id: str, count: int, *, owner: str = ALICE) -> list[RunningTask]:
    """`count` records of fresh tasks held by `instance_id`."""
    return [RunningTask(new_id('run'), owner, instance_id) for _ in range(count)]


class LostReplies(FaultPlan):
    """A plan under which every call runs and its reply is lost."""

    def __init__(self) -> None:
        super().__init__(every=1, kinds=('connection',))

    def next_fault(self, call: str) -> Fault | None:
        """Returns a connection fault after the call, while active."""
        fault = super().next_fault(call)
        return None if fault is None else Fault('connection', False, call)


class RunningTasksConformance(BackendFactory):
    """Recording running tasks, and claiming those of dead replicas."""

    silence: ClassVar[float] = 1.0
    """Seconds a replica stays silent in the silent-replica test.

    Keep it below the backends' ``heartbeat_interval`` (10 s by default),
    so the silent replica's own loop does not beat meanwhile.
    """

    claimers: ClassVar[int] = 4
    """Replicas that claim at once in the exactly-once test."""

    async def _add(self, backend: Backend, recorded: list[RunningTask]) -> None:
        for record in recorded:
            await running_tasks(backend).add(record)

    @pytest.mark.asyncio
    async def test_add_running_and_remove(
        self, backend: Backend, replica: Backend
    ) -> None:
        mine = records(backend.instance_id, 2)
        theirs = records(replica.instance_id, 1, owner=BOB)
        await self._add(backend, mine)
        await self._add(replica, theirs)
        tasks = running_tasks(backend)
        assert set(await tasks.running(backend.instance_id)) == set(mine)
        assert set(await tasks.running(replica.instance_id)) == set(theirs)
        assert set(await running_tasks(replica).running()) == {*mine, *theirs}
        await tasks.remove(mine[0].task_id, backend.instance_id)
        await tasks.remove(mine[0].task_id, backend.instance_id)  # idempotent
        await tasks.remove(new_id('absent'), backend.instance_id)
        assert set(await tasks.running()) == {mine[1], *theirs}
        assert await tasks.running(new_id('nobody')) == []

    @pytest.mark.asyncio
    async def test_remove_by_another_instance_is_a_no_op(
        self, backend: Backend, replica: Backend
    ) -> None:
        [record] = records(replica.instance_id, 1)
        await self._add(replica, [record])
        await running_tasks(backend).remove(record.task_id, backend.instance_id)
        assert await running_tasks(backend).running() == [record]

    @pytest.mark.asyncio
    async def test_remove_many_drops_only_what_each_holder_holds(
        self, backend: Backend, replica: Backend
    ) -> None:
        mine = records(backend.instance_id, 3)
        [theirs] = records(replica.instance_id, 1, owner=BOB)
        await self._add(backend, mine)
        await self._add(replica, [theirs])
        tasks = running_tasks(backend)
        await tasks.remove_many([])
        await tasks.remove_many(
            [
                (mine[0].task_id, backend.instance_id),
                (mine[1].task_id, backend.instance_id),
                (theirs.task_id, backend.instance_id),  # not this holder's
                (new_id('absent'), backend.instance_id),
            ]
        )
        assert set(await tasks.running()) == {mine[2], theirs}
        await tasks.remove_many(
            [
                (mine[2].task_id, backend.instance_id),
                (theirs.task_id, replica.instance_id),
            ]
        )
        assert await tasks.running() == []

    @pytest.mark.asyncio
    async def test_adding_again_replaces_the_record(
        self, backend: Backend, namespace: str
    ) -> None:
        first = self.create_backend(namespace)
        second = self.create_backend(namespace)
        async with first, second:
            [record] = records(first.instance_id, 1)
            await self._add(first, [record])
            moved = RunningTask(record.task_id, ALICE, second.instance_id, resumes=1)
            await self._add(second, [moved])
            assert await running_tasks(backend).running() == [moved]
            assert await running_tasks(backend).running(first.instance_id) == []
            # The earlier holder can no longer drop the record.
            await running_tasks(first).remove(record.task_id, first.instance_id)
            assert await running_tasks(backend).running() == [moved]
        # Both replicas are gone: the task is claimed once, as last recorded.
        assert await running_tasks(backend).claim_orphans(older_than=HOUR) == [moved]
        assert await running_tasks(backend).claim_orphans(older_than=HOUR) == []

    @pytest.mark.asyncio
    async def test_records_of_live_replicas_are_not_claimed(
        self, backend: Backend, replica: Backend
    ) -> None:
        # No explicit heartbeat: start() must leave one before any record.
        mine = records(backend.instance_id, 2)
        theirs = records(replica.instance_id, 2)
        await self._add(backend, mine)
        await self._add(replica, theirs)
        assert await running_tasks(backend).claim_orphans(older_than=HOUR) == []
        # A replica never claims its own records, however old its heartbeat.
        claimed = await running_tasks(backend).claim_orphans(older_than=0)
        assert set(claimed) == set(theirs)
        assert set(await running_tasks(backend).running()) == set(mine)

    @pytest.mark.asyncio
    async def test_records_of_a_stopped_replica_are_claimed_at_once(
        self, backend: Backend, namespace: str
    ) -> None:
        gone = self.create_backend(namespace)
        async with gone:
            left = records(gone.instance_id, 3)
            await self._add(gone, left)
        claimed = await running_tasks(backend).claim_orphans(older_than=HOUR)
        assert sorted(claimed, key=str) == sorted(left, key=str)
        assert await running_tasks(backend).running() == []
        assert await running_tasks(backend).claim_orphans(older_than=HOUR) == []

    @pytest.mark.asyncio
    async def test_records_of_a_silent_replica_are_claimed(
        self, backend: Backend, replica: Backend, namespace: str
    ) -> None:
        live = self.create_backend(namespace)
        async with live:
            silent = records(replica.instance_id, 2)
            kept = records(live.instance_id, 2)
            await self._add(replica, silent)
            await self._add(live, kept)
            await replica.lifecycle.heartbeat()
            await asyncio.sleep(self.silence * 1.5)
            await live.lifecycle.heartbeat()
            claimed = await running_tasks(backend).claim_orphans(
                older_than=self.silence
            )
            assert set(claimed) == set(silent)
            assert set(await running_tasks(backend).running()) == set(kept)

    @pytest.mark.asyncio
    async def test_records_stay_claimable_after_the_replica_is_reaped(
        self, backend: Backend, replica: Backend
    ) -> None:
        left = records(replica.instance_id, 2)
        await self._add(replica, left)
        await replica.lifecycle.heartbeat()
        assert replica.instance_id in await backend.lifecycle.reap(older_than=0)
        claimed = await running_tasks(backend).claim_orphans(older_than=HOUR)
        assert set(claimed) == set(left)

    @pytest.mark.asyncio
    async def test_records_keep_owner_resumes_and_any_id(
        self, backend: Backend, namespace: str
    ) -> None:
        gone = self.create_backend(namespace)
        odd = [
            RunningTask('t|{x}:*é 1', 'o|{y}:ü', gone.instance_id, resumes=2),
            RunningTask(new_id('run'), BOB, gone.instance_id),
            RunningTask('x' * 300, 'ø' * 100, gone.instance_id, resumes=7),
        ]
        async with gone:
            await self._add(gone, odd)
            assert set(await running_tasks(backend).running(gone.instance_id)) == set(
                odd
            )
        claimed = await running_tasks(backend).claim_orphans(older_than=HOUR)
        assert sorted(claimed, key=str) == sorted(odd, key=str)

    @pytest.mark.asyncio
    async def test_concurrent_claimers_each_get_a_record_exactly_once(
        self, backend: Backend, replica: Backend, namespace: str
    ) -> None:
        extra = [self.create_backend(namespace) for _ in range(self.claimers - 2)]
        claimers = [backend, replica, *extra]
        async with contextlib.AsyncExitStack() as stack:
            for other in extra:
                await stack.enter_async_context(other)
            for _ in range(3):
                left: list[RunningTask] = []
                dead = [self.create_backend(namespace) for _ in range(3)]
                for gone in dead:
                    async with gone:
                        batch = records(gone.instance_id, 10)
                        await self._add(gone, batch)
                        left += batch
                results = await asyncio.gather(
                    *(running_tasks(c).claim_orphans(older_than=HOUR) for c in claimers)
                )
                counts = Counter(r for result in results for r in result)
                twice = [r.task_id for r, n in counts.items() if n > 1]
                assert not twice, f'records claimed more than once: {twice}'
                assert set(counts) == set(left)

    @pytest.mark.asyncio
    async def test_a_claim_whose_reply_is_lost_loses_no_record(
        self, backend: Backend, namespace: str
    ) -> None:
        claimer = self.create_backend(namespace)
        await claimer.start()
        try:
            # The claimer's reply is lost: its next claim returns the records.
            left = await self._stopped_replica_records(namespace)
            got = await self._claim_losing_replies(claimer)
            got += await running_tasks(claimer).claim_orphans(older_than=HOUR)
            assert set(got) == set(left)
            # The claimer dies after the lost reply: another replica gets them.
            left = await self._stopped_replica_records(namespace)
            got = await self._claim_losing_replies(claimer)
        finally:
            await claimer.stop()
        got += await running_tasks(backend).claim_orphans(older_than=HOUR)
        assert set(got) == set(left)

    async def _stopped_replica_records(self, namespace: str) -> list[RunningTask]:
        gone = self.create_backend(namespace)
        async with gone:
            left = records(gone.instance_id, 5)
            await self._add(gone, left)
        return left

    async def _claim_losing_replies(self, claimer: Backend) -> list[RunningTask]:
        """Claims twice while every call of `claimer` loses its reply."""
        plan = LostReplies()
        self.inject_faults(claimer, plan)
        got: list[RunningTask] = []
        try:
            for _ in range(2):
                with contextlib.suppress(Exception):
                    got += await running_tasks(claimer).claim_orphans(older_than=HOUR)
        finally:
            plan.stop()
        return got
