"""Conformance of `Backend.event_stream`: replay, order, gaps, dedup, live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING

import pytest
from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    TaskVersion,
    VersionedEvent,
)
from a2a.types.a2a_pb2 import TaskState

from a2a_scale.testing.base import BackendFactory
from a2a_scale.testing.helpers import (
    PROBE_PREFIX,
    PROBE_VERSION,
    TaskWriter,
    agent_message,
    is_probe,
    make_task,
    new_id,
)

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale.backend import Backend

WORKING = TaskState.TASK_STATE_WORKING
COMPLETED = TaskState.TASK_STATE_COMPLETED
FAILED = TaskState.TASK_STATE_FAILED


def _assert_same(
    got: Sequence[VersionedEvent], expected: Sequence[VersionedEvent | None]
) -> None:
    assert [(e.version, e.event) for e in got] == [
        (e.version, e.event) for e in expected if e is not None
    ]


async def _next_real(
    generator: AsyncGenerator[VersionedEvent, None],
) -> VersionedEvent:
    while True:
        versioned = await generator.__anext__()
        if not is_probe(versioned.event):
            return versioned


class EventStreamConformance(BackendFactory):
    """The `TaskEventStream` contract on one replica."""

    # --- Live delivery (every backend) -------------------------------------

    @pytest.mark.asyncio
    async def test_saved_events_reach_subscriber_without_publish(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        subscription = await self.subscribe(backend, writer.task_id)
        expected = [
            await writer.create(),
            await writer.set_state(WORKING),
            await writer.add_artifact('chunk'),
            await writer.set_state(FAILED),  # the SDK never publishes this one
        ]
        _assert_same(await subscription.take(4), expected)

    @pytest.mark.asyncio
    async def test_publish_after_save_does_not_duplicate(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        subscription = await self.subscribe(backend, writer.task_id)
        expected: list[VersionedEvent] = []
        for state in (WORKING, WORKING, COMPLETED):
            event = await writer.set_state(state) if expected else await writer.create()
            assert event is not None
            await backend.event_stream.publish(writer.task_id, event)
            await backend.event_stream.publish(writer.task_id, event)
            expected.append(event)
        _assert_same(await subscription.take(3), expected)
        # Nothing else was queued: the next event is the next write.
        final = agent_message('after', task_id=writer.task_id)
        marker = VersionedEvent(event=final, version=TaskVersion(10_000))
        await backend.event_stream.publish(writer.task_id, marker)
        assert (await subscription.next()).event == final

    @pytest.mark.asyncio
    async def test_published_only_message_reaches_subscriber_once(
        self, backend: Backend
    ) -> None:
        task_id = new_id()
        subscription = await self.subscribe(backend, task_id)
        first = VersionedEvent(
            event=agent_message('one', task_id=task_id), version=TaskVersion.MISSING
        )
        second = VersionedEvent(
            event=agent_message('two', task_id=task_id), version=TaskVersion.MISSING
        )
        await backend.event_stream.publish(task_id, first)
        await backend.event_stream.publish(task_id, first)
        await backend.event_stream.publish(task_id, second)
        _assert_same(await subscription.take(2), [first, second])

    @pytest.mark.asyncio
    async def test_direct_writes_without_event_are_not_streamed(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        subscription = await self.subscribe(backend, writer.task_id)
        await writer.create(with_event=False)
        await writer.set_state(WORKING, with_event=False)
        expected = await writer.set_state(COMPLETED)
        _assert_same([await subscription.next()], [expected])

    @pytest.mark.asyncio
    async def test_rejected_save_streams_nothing(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        subscription = await self.subscribe(backend, writer.task_id)
        created = await writer.create()
        stale = TaskWriter(backend.task_store, alice, writer.task)
        with pytest.raises(ConcurrentTaskModificationError):
            await stale.set_state(FAILED)  # a first write: the id is taken
        expected = await writer.set_state(COMPLETED)
        _assert_same(await subscription.take(2), [created, expected])

    @pytest.mark.asyncio
    async def test_every_event_type_round_trips(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        subscription = await self.subscribe(backend, writer.task_id)
        expected = [
            await writer.create(),
            await writer.set_state(WORKING, text='thinking'),
            await writer.add_artifact('x' * 10_000),
        ]
        message = VersionedEvent(
            event=agent_message('reply', task_id=writer.task_id), version=writer.version
        )
        await backend.event_stream.publish(writer.task_id, message)
        _assert_same(await subscription.take(4), [*expected, message])

    @pytest.mark.asyncio
    async def test_subscriptions_only_see_their_task(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        one = TaskWriter(backend.task_store, alice, make_task())
        two = TaskWriter(backend.task_store, alice, make_task())
        first = await self.subscribe(backend, one.task_id)
        second = await self.subscribe(backend, two.task_id)
        await two.create()
        await two.set_state(WORKING)
        expected = await one.create()
        _assert_same([await first.next()], [expected])
        assert (await second.next()).event.id == two.task_id

    @pytest.mark.asyncio
    async def test_live_events_arrive_in_order_without_gaps(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        subscription = await self.subscribe(backend, writer.task_id)
        expected = [await writer.create()]
        for i in range(40):
            expected.append(await writer.add_artifact(f'part {i}'))
        _assert_same(await subscription.take(41), expected)

    @pytest.mark.asyncio
    async def test_many_subscribers_see_the_same_sequence(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        subscriptions = [
            await self.subscribe(backend, writer.task_id) for _ in range(5)
        ]
        expected = [await writer.create()]
        for i in range(10):
            expected.append(await writer.add_artifact(f'part {i}'))
        for subscription in subscriptions:
            _assert_same(await subscription.take(11), expected)

    @pytest.mark.asyncio
    async def test_stream_stays_open_after_terminal_state(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        subscription = await self.subscribe(backend, writer.task_id)
        await writer.create()
        await writer.set_state(COMPLETED)
        await subscription.take(2)
        late = VersionedEvent(
            event=agent_message('late', task_id=writer.task_id),
            version=TaskVersion(10_000),
        )
        await backend.event_stream.publish(writer.task_id, late)
        _assert_same([await subscription.next()], [late])
        assert not subscription.ended.is_set()

    @pytest.mark.asyncio
    async def test_aclose_unregisters_subscription(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        generator = backend.event_stream.subscribe(
            writer.task_id, after=TaskVersion.MISSING
        )
        pending: asyncio.Future[VersionedEvent] = asyncio.ensure_future(
            generator.__anext__()
        )
        if not self.supports_replay:
            pending = await self._probe_until_live(
                backend, generator, writer.task_id, pending
            )
        created = await writer.create()
        got = await asyncio.wait_for(pending, self.timeout)
        assert created is not None
        assert (got.version, got.event) == (created.version, created.event)
        assert self.subscription_count(backend, writer.task_id) in (None, 1)
        await generator.aclose()
        assert self.subscription_count(backend, writer.task_id) in (None, 0)
        with pytest.raises(StopAsyncIteration):
            await generator.__anext__()
        await writer.set_state(COMPLETED)  # writing to a closed stream is fine

    @pytest.mark.asyncio
    async def test_cancelling_a_waiting_consumer_unregisters_it(
        self, backend: Backend
    ) -> None:
        task_id = new_id()
        generator = backend.event_stream.subscribe(task_id, after=TaskVersion.MISSING)
        consumer = asyncio.ensure_future(generator.__anext__())
        done, _ = await asyncio.wait({consumer}, timeout=0.2)
        assert not done, 'an empty stream must wait, not end'
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert self.subscription_count(backend, task_id) in (None, 0)
        await generator.aclose()

    async def _probe_until_live(
        self,
        backend: Backend,
        generator: AsyncGenerator[VersionedEvent, None],
        task_id: str,
        pending: asyncio.Future[VersionedEvent],
    ) -> asyncio.Future[VersionedEvent]:
        """Publishes probes until `pending` gets one; returns the next real read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not pending.done():
            assert loop.time() < deadline, 'the subscription never went live'
            probe = agent_message('probe', task_id=task_id)
            probe.message_id = f'{PROBE_PREFIX}{new_id()}'
            await backend.event_stream.publish(
                task_id, VersionedEvent(event=probe, version=PROBE_VERSION)
            )
            await asyncio.wait({pending}, timeout=0.05)
        assert is_probe(pending.result().event)
        return asyncio.ensure_future(_next_real(generator))

    # --- Replay (backends with supports_replay) ----------------------------

    @pytest.mark.asyncio
    async def test_replays_logged_events_then_goes_live(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        self.require_replay()
        writer = TaskWriter(backend.task_store, alice, make_task())
        logged = [await writer.create(), await writer.set_state(WORKING)]
        subscription = await self.subscribe(backend, writer.task_id)
        _assert_same(await subscription.take(2), logged)
        live = await writer.set_state(COMPLETED)
        _assert_same([await subscription.next()], [live])

    @pytest.mark.asyncio
    async def test_replay_starts_after_the_given_version(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        self.require_replay()
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        await writer.set_state(WORKING)
        snapshot = writer.version
        later = [await writer.add_artifact('a'), await writer.add_artifact('b')]
        subscription = await self.subscribe(backend, writer.task_id, after=snapshot)
        _assert_same(await subscription.take(2), later)

    @pytest.mark.asyncio
    async def test_replay_includes_published_only_events(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        self.require_replay()
        task_id = new_id()
        reply = VersionedEvent(
            event=agent_message('reply', task_id=task_id), version=TaskVersion.MISSING
        )
        await backend.event_stream.publish(task_id, reply)
        subscription = await self.subscribe(backend, task_id)
        _assert_same([await subscription.next()], [reply])

    @pytest.mark.asyncio
    async def test_subscribing_while_writing_loses_and_repeats_nothing(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        self.require_replay()
        writer = TaskWriter(backend.task_store, alice, make_task())
        first = await writer.create()
        assert first is not None
        expected = [first]
        started = asyncio.Event()

        async def write() -> None:
            for i in range(30):
                expected.append(await writer.add_artifact(f'part {i}'))
                if i == 5:
                    started.set()
                await asyncio.sleep(0)

        writing = asyncio.create_task(write())
        await started.wait()
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        subscription = await self.subscribe(
            backend, writer.task_id, after=stored.version
        )
        await writing
        tail = [
            e for e in expected if e is not None and e.version.is_after(stored.version)
        ]
        _assert_same(await subscription.take(len(tail)), tail)
