"""Fault injection: a plan of failing calls, and the test that runs under it.

A backend's factory implements `BackendFactory.inject_faults` by wrapping
its client so that each call asks the `FaultPlan` first. The suite then
writes events while the calls fail and checks that no event is lost,
duplicated or reordered, and that no subscriber is left waiting.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pytest
from a2a.server.cluster import StoredTask, TaskVersion, VersionedEvent
from a2a.types.a2a_pb2 import (
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)

from a2a_scale.errors import EventGapError
from a2a_scale.testing.base import BackendFactory
from a2a_scale.testing.helpers import Subscription, TaskWriter, make_task

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext
    from a2a.server.events.event_queue import Event

    from a2a_scale.backend import Backend

FaultKind = Literal['connection', 'server']


@dataclass(frozen=True)
class Fault:
    """One injected failure.

    Attributes:
        kind: ``'connection'`` (the link broke) or ``'server'`` (the service
            answered with an error).
        before: Whether the call fails before it reaches the service; when
            False the call runs and its reply is lost.
        call: The name of the failing call.
    """

    kind: FaultKind
    before: bool
    call: str


class FaultPlan:
    """Decides which calls fail: every `every`-th matching call, kinds in turn.

    Thread-safe. Faults alternate between the given kinds, and between
    failing before and after the call.

    Args:
        every: Fail one call in `every`.
        kinds: The kinds of fault to inject, in turn.
        calls: The call names that may fail; all of them when empty.
    """

    def __init__(
        self,
        *,
        every: int = 5,
        kinds: tuple[FaultKind, ...] = ('connection', 'server'),
        calls: Collection[str] = (),
    ) -> None:
        if every < 1 or not kinds:
            raise ValueError('a FaultPlan needs every >= 1 and at least one kind')
        self.every = every
        self.kinds = kinds
        self.calls = frozenset(calls)
        self.active = True
        self.seen = 0
        self.fired: list[Fault] = []
        self.forced = 0
        self._lock = threading.Lock()

    def next_fault(self, call: str) -> Fault | None:
        """Counts a call named `call`; returns the fault it must raise, if any."""
        with self._lock:
            if self.calls and call not in self.calls:
                return None
            if self.forced > 0:
                self.forced -= 1
            elif not self.active:
                return None
            else:
                self.seen += 1
                if self.seen % self.every:
                    return None
            n = len(self.fired)
            fault = Fault(
                kind=self.kinds[n % len(self.kinds)],
                before=(n // len(self.kinds)) % 2 == 0,
                call=call,
            )
            self.fired.append(fault)
            return fault

    def fail_next(self, count: int) -> None:
        """Makes the next `count` matching calls fail, even after `stop`."""
        with self._lock:
            self.forced = count

    def stop(self) -> None:
        """Lets every later call through."""
        with self._lock:
            self.active = False


async def write_through_faults(
    writer: TaskWriter, context: ServerCallContext, text: str
) -> VersionedEvent:
    """Adds an artifact, retrying while calls fail, as a careful client would.

    A failed save may have landed (its reply was lost): the task is read
    back, and the write counts as done when the artifact is there.
    """
    want = len(writer.task.artifacts) + 1
    for _ in range(100):
        try:
            return await writer.add_artifact(text)
        except Exception:
            stored = await _get_retrying(writer, context)
            if stored is not None and len(stored.task.artifacts) == want:
                event = _artifact_event(stored.task)
                writer.task, writer.version = stored.task, stored.version
                return VersionedEvent(event=event, version=stored.version)
            if stored is not None:
                writer.task, writer.version = stored.task, stored.version
    raise AssertionError(f'a save of task {writer.task_id!r} never succeeded')


def _artifact_event(task: Task) -> Event:
    return TaskArtifactUpdateEvent(
        task_id=task.id, context_id=task.context_id, artifact=task.artifacts[-1]
    )


class FaultConformance(BackendFactory):
    """Delivery while the backend's calls fail (see `inject_faults`).

    Contract: with connection and server errors injected into the calls of
    one replica, a writer that retries its saves loses nothing, and every
    subscriber (on the faulty replica and on a healthy one) receives every
    event exactly once and in order, within the suite's timeout once the
    faults stop. A subscription may end with `EventGapError` (the client then
    subscribes again after its last version); any other end fails the test.
    """

    @pytest.mark.asyncio
    async def test_faults_lose_duplicate_or_reorder_nothing(
        self, namespace: str, replica: Backend, alice: ServerCallContext
    ) -> None:
        self.require_replay()
        faulty = self.create_backend(namespace)
        async with faulty:
            plan = FaultPlan()
            self.inject_faults(faulty, plan)
            writer = TaskWriter(faulty.task_store, alice, make_task())
            first: VersionedEvent | None = None
            while first is None:
                try:
                    first = await writer.create()
                except Exception:
                    stored = await _get_retrying(writer, alice)
                    if stored is not None:
                        writer.task, writer.version = stored.task, stored.version
                        first = VersionedEvent(
                            event=stored.task, version=stored.version
                        )
            expected = [first]
            readers = [
                asyncio.create_task(self._read_all(b, writer.task_id, expected))
                for b in (faulty, replica)
            ]
            for i in range(self.fault_events):
                expected.append(await write_through_faults(writer, alice, f'part {i}'))
            plan.stop()
            done = writer.version
            finished = await writer.set_state(TaskState.TASK_STATE_COMPLETED)
            # The reads this last write wakes fail too: a backend that gives
            # up a wake-up on an error leaves its subscribers waiting.
            plan.fail_next(3)
            assert finished is not None
            expected.append(finished)
            assert plan.fired, 'inject_faults made no call fail'
            try:
                results = await asyncio.gather(*readers)
            finally:
                plan.fail_next(0)  # the backend's teardown runs without faults
            want = [(e.version, e.event) for e in expected]
            for got in results:
                assert got == want, (
                    f'{len(got)} events received, {len(want)} expected; first '
                    f'difference at {_first_difference(got, want)} (faults: '
                    f'{len(plan.fired)}, last faulty version {done})'
                )

    async def _read_all(
        self, backend: Backend, task_id: str, expected: list[VersionedEvent]
    ) -> list[tuple[TaskVersion, Event]]:
        """Reads until the COMPLETED event, resubscribing after a gap."""
        got: list[tuple[TaskVersion, Event]] = []
        after = TaskVersion.MISSING
        for _ in range(20):
            subscription = Subscription(
                backend.event_stream, task_id, after=after, timeout=self.timeout
            )
            try:
                while True:
                    item = await subscription.next()
                    got.append((item.version, item.event))
                    after = item.version
                    if _is_completed(item.event):
                        return got
            except AssertionError:
                if not isinstance(subscription.error, EventGapError):
                    raise
            finally:
                await subscription.close()
        raise AssertionError(f'the subscription to {task_id!r} kept failing')


async def _get_retrying(
    writer: TaskWriter, context: ServerCallContext
) -> StoredTask | None:
    for _ in range(100):
        try:
            return await writer.store.get(writer.task_id, context)
        except Exception:
            await asyncio.sleep(0.01)
    raise AssertionError('get never succeeded')


def _is_completed(event: Event) -> bool:
    return (
        isinstance(event, TaskStatusUpdateEvent)
        and event.status.state == TaskState.TASK_STATE_COMPLETED
    )


def _first_difference(got: Sequence[object], want: Sequence[object]) -> int:
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return i
    return min(len(got), len(want))
