"""Delivery guarantees: slow consumers, deleted tasks, subscriptions that wait.

The contract these tests check, for every backend:

- **No silent gap.** A subscriber receives every event after its position,
  in order and once, or its iteration ends with `EventGapError` (for
  example when it fell behind the retained log). A slow subscriber never
  delays or breaks the other subscribers of the task.
- **A subscription ends only when its consumer stops it.** A terminal
  event does not end it; it waits for more.
- **Delete.** After `delete`, `get` returns None and a new subscription to
  a reused id sees only the new task's events. A subscription open across
  the delete either receives the new task's events, in order from its
  first, or ends with `EventGapError`; it never stalls and never mixes in
  the old task's events.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from a2a.server.cluster import TaskVersion, VersionedEvent
from a2a.types.a2a_pb2 import TaskState

from a2a_scale.errors import EventGapError
from a2a_scale.testing.base import BackendFactory
from a2a_scale.testing.helpers import Subscription, TaskWriter, is_probe, make_task

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale.backend import Backend

WORKING = TaskState.TASK_STATE_WORKING
COMPLETED = TaskState.TASK_STATE_COMPLETED


def _pairs(events: list[VersionedEvent | None]) -> list[tuple[object, object]]:
    return [(e.version, e.event) for e in events if e is not None]


class DeliveryConformance(BackendFactory):
    """Slow consumers, delete semantics, and subscriptions that wait."""

    @pytest.mark.asyncio
    async def test_slow_consumer_gets_every_event_or_a_gap_error(
        self, namespace: str, alice: ServerCallContext
    ) -> None:
        backend = self.create_backend_retaining(namespace, self.retained_events)
        async with backend:
            writer = TaskWriter(backend.task_store, alice, make_task())
            fast = Subscription(
                backend.event_stream, writer.task_id, timeout=self.timeout
            )
            slow_events = backend.event_stream.subscribe(
                writer.task_id, after=TaskVersion.MISSING
            )
            slow_got: list[tuple[object, object]] = []
            slow_error: list[BaseException] = []
            live = asyncio.Event()

            async def consume_slowly() -> None:
                try:
                    async for versioned in slow_events:
                        if is_probe(versioned.event):
                            live.set()
                            continue
                        slow_got.append((versioned.version, versioned.event))
                        await asyncio.sleep(self.slow_consumer_delay)
                except EventGapError as e:
                    slow_error.append(e)

            slow = asyncio.create_task(consume_slowly())
            try:
                if not self.supports_replay:
                    await fast.wait_live()
                    await _probe(backend, writer.task_id, live, self.timeout)
                expected = [await writer.create()]
                fast_got: list[tuple[object, object]] = []
                for i in range(self.slow_consumer_events):
                    expected.append(await writer.set_state(WORKING, text=f'{i}'))
                    if i % 50 == 0:
                        await asyncio.sleep(0)
                want = _pairs(expected)
                # The fast subscriber is on time: every event, within the
                # timeout of the last write.
                while len(fast_got) < len(want):
                    item = await fast.next()
                    fast_got.append((item.version, item.event))
                assert fast_got == want, 'the fast subscriber lost or reordered events'
                loop = asyncio.get_running_loop()
                budget = self.timeout + len(want) * self.slow_consumer_delay * 2
                deadline = loop.time() + budget
                while not slow.done() and len(slow_got) < len(want):
                    assert loop.time() < deadline, (
                        f'the slow subscriber stalled after {len(slow_got)} of '
                        f'{len(want)} events, without an EventGapError'
                    )
                    await asyncio.sleep(0.05)
                if slow.done():
                    slow.result()
                assert slow_got == want[: len(slow_got)], (
                    'the slow subscriber received a silent gap or reordered events'
                )
                if len(slow_got) < len(want):
                    assert slow_error, (
                        f'the slow subscriber ended after {len(slow_got)} of '
                        f'{len(want)} events without an EventGapError'
                    )
                    assert slow_error[0].task_id == writer.task_id  # type: ignore[attr-defined]
            finally:
                slow.cancel()
                await asyncio.gather(slow, return_exceptions=True)
                await slow_events.aclose()
                await fast.close()

    @pytest.mark.asyncio
    async def test_subscription_waits_after_terminal_event(
        self, backend: Backend, replica: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        here = await self.subscribe(backend, writer.task_id)
        there = await self.subscribe(replica, writer.task_id)
        expected = _pairs([await writer.create(), await writer.set_state(COMPLETED)])
        for subscription in (here, there):
            got = await subscription.take(2)
            assert [(e.version, e.event) for e in got] == expected
        if self.supports_replay:
            late = await self.subscribe(backend, writer.task_id)
            got = await late.take(2)
            assert [(e.version, e.event) for e in got] == expected
        else:
            late = here
        await asyncio.sleep(min(1.0, self.timeout / 2))
        for subscription in (here, there, late):
            assert not subscription.ended.is_set(), (
                'a subscription ended on its own after a terminal event '
                f'({subscription.error!r})'
            )

    @pytest.mark.asyncio
    async def test_delete_then_reuse_of_the_id(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        self.require_replay()
        old = TaskWriter(backend.task_store, alice, make_task())
        open_before = await self.subscribe(backend, old.task_id)
        old_events = [await old.create(), await old.set_state(WORKING)]
        got = await open_before.take(2)
        assert [(e.version, e.event) for e in got] == _pairs(old_events)
        await backend.task_store.delete(old.task_id, alice)
        assert await backend.task_store.get(old.task_id, alice) is None

        reused = make_task(old.task_id, context_id='ctx-reused')
        new = TaskWriter(backend.task_store, alice, reused)
        new_events = _pairs([await new.create(), await new.set_state(COMPLETED)])
        fresh = await self.subscribe(backend, old.task_id)
        got = await fresh.take(2)
        assert [(e.version, e.event) for e in got] == new_events, (
            'a subscription to a reused id saw events of the deleted task'
        )
        stored = await backend.task_store.get(old.task_id, alice)
        assert stored is not None
        assert stored.task.context_id == 'ctx-reused'

        # The subscription open across the delete: the new events, or a gap.
        received: list[tuple[object, object]] = []
        try:
            while len(received) < len(new_events):
                item = await open_before.next()
                received.append((item.version, item.event))
        except AssertionError:
            assert isinstance(open_before.error, EventGapError), (
                'a subscription open across a delete neither delivered the new '
                f"task's events nor ended with EventGapError (got {len(received)} "
                f'events, error {open_before.error!r})'
            )
        else:
            assert received == new_events


async def _probe(
    backend: Backend, task_id: str, live: asyncio.Event, within: float
) -> None:
    """Publishes probes until `live` is set (for live-only backends)."""
    from a2a_scale.testing.helpers import (  # noqa: PLC0415
        PROBE_PREFIX,
        PROBE_VERSION,
        agent_message,
        new_id,
    )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not live.is_set():
        assert loop.time() < deadline, 'the slow subscription never went live'
        probe = agent_message('probe', task_id=task_id)
        probe.message_id = f'{PROBE_PREFIX}{new_id()}'
        await backend.event_stream.publish(
            task_id, VersionedEvent(event=probe, version=PROBE_VERSION)
        )
        await asyncio.sleep(0.05)
