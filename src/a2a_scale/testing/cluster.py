"""Conformance of two backend instances acting as two replicas."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    TaskVersion,
    VersionedEvent,
)
from a2a.types.a2a_pb2 import (
    ListTasksRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)

from a2a_scale.testing.base import BackendFactory
from a2a_scale.testing.helpers import TaskWriter, agent_message, make_task, new_id

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale.backend import Backend

WORKING = TaskState.TASK_STATE_WORKING
COMPLETED = TaskState.TASK_STATE_COMPLETED
CANCELED = TaskState.TASK_STATE_CANCELED


class ClusterConformance(BackendFactory):
    """What one replica writes, the other reads, streams and respects."""

    @pytest.mark.asyncio
    async def test_write_on_a_read_and_update_on_b(
        self, backend: Backend, replica: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        stored = await replica.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task == writer.task
        assert stored.version == writer.version
        on_b = TaskWriter(replica.task_store, alice, stored.task)
        on_b.version = stored.version
        await on_b.set_state(WORKING)
        with pytest.raises(ConcurrentTaskModificationError):
            await writer.set_state(COMPLETED)  # A's version is now stale

    @pytest.mark.asyncio
    async def test_events_written_on_a_stream_on_b(
        self, backend: Backend, replica: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        subscription = await self.subscribe(replica, writer.task_id)
        expected = [await writer.create()]
        for i in range(20):
            expected.append(await writer.add_artifact(f'part {i}'))
        expected.append(await writer.set_state(COMPLETED))
        got = await subscription.take(len(expected))
        assert [(e.version, e.event) for e in got] == [
            (e.version, e.event) for e in expected if e is not None
        ]

    @pytest.mark.asyncio
    async def test_message_published_on_a_reaches_b(
        self, backend: Backend, replica: Backend
    ) -> None:
        task_id = new_id()
        subscription = await self.subscribe(replica, task_id)
        reply = VersionedEvent(
            event=agent_message('done', task_id=task_id), version=TaskVersion.MISSING
        )
        await backend.event_stream.publish(task_id, reply)
        got = await subscription.next()
        assert (got.version, got.event) == (reply.version, reply.event)

    @pytest.mark.asyncio
    async def test_resubscribe_on_b_from_snapshot_sees_every_later_event(
        self, backend: Backend, replica: Backend, alice: ServerCallContext
    ) -> None:
        self.require_replay()
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        await writer.set_state(WORKING)
        snapshot = await replica.task_store.get(writer.task_id, alice)
        assert snapshot is not None
        # Events land between the snapshot read and the subscribe.
        between = [await writer.add_artifact('a'), await writer.add_artifact('b')]
        subscription = await self.subscribe(
            replica, writer.task_id, after=snapshot.version
        )
        later = await writer.set_state(COMPLETED)
        got = await subscription.take(3)
        assert [(e.version, e.event) for e in got] == [
            (e.version, e.event) for e in [*between, later] if e is not None
        ]

    @pytest.mark.asyncio
    async def test_cancel_on_b_beats_writer_on_a(
        self, backend: Backend, replica: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        await writer.set_state(WORKING)
        subscription = await self.subscribe(
            backend, writer.task_id, after=writer.version
        )
        stored = await replica.task_store.get(writer.task_id, alice)
        assert stored is not None
        cancelled = Task()
        cancelled.CopyFrom(stored.task)
        cancelled.status.state = CANCELED
        await replica.task_store.save(
            cancelled,
            event=None,
            prev=stored.task,
            prev_version=stored.version,
            context=alice,
        )
        with pytest.raises(ConcurrentTaskModificationError):
            await writer.add_artifact('too late')
        after = await backend.task_store.get(writer.task_id, alice)
        assert after is not None
        assert after.task.status.state == CANCELED
        marker = VersionedEvent(
            event=agent_message('marker', task_id=writer.task_id),
            version=TaskVersion(10_000),
        )
        await replica.event_stream.publish(writer.task_id, marker)
        got = await subscription.next()
        assert got.event == marker.event  # the failed write streamed nothing

    @pytest.mark.asyncio
    async def test_writers_on_both_replicas_lose_no_update(
        self, backend: Backend, replica: Backend, alice: ServerCallContext
    ) -> None:
        from a2a_scale.testing.store import _increment  # noqa: PLC0415

        task = make_task()
        task.metadata['count'] = 0
        await TaskWriter(backend.task_store, alice, task).create()
        await asyncio.gather(
            *(
                _increment(side, alice, task.id, 6)
                for side in (backend, replica, backend, replica)
            )
        )
        stored = await replica.task_store.get(task.id, alice)
        assert stored is not None
        assert stored.task.metadata['count'] == 24

    @pytest.mark.asyncio
    async def test_list_on_b_sees_tasks_of_a_for_their_owner_only(
        self,
        backend: Backend,
        replica: Backend,
        alice: ServerCallContext,
        bob: ServerCallContext,
    ) -> None:
        await TaskWriter(backend.task_store, alice, make_task('a1')).create()
        await TaskWriter(backend.task_store, bob, make_task('b1')).create()
        mine = await replica.task_store.list(ListTasksRequest(), alice)
        assert [t.id for t in mine.tasks] == ['a1']
        assert await replica.task_store.get('b1', alice) is None
        await replica.task_store.delete('b1', alice)
        assert await backend.task_store.get('b1', bob) is not None

    @pytest.mark.asyncio
    async def test_push_configs_are_shared(
        self,
        backend: Backend,
        replica: Backend,
        alice: ServerCallContext,
        bob: ServerCallContext,
    ) -> None:
        task_id = new_id()
        config = TaskPushNotificationConfig(id='c1', url='https://hooks.example/x')
        await backend.push_config_store.set_info(task_id, config, alice)
        (read,) = await replica.push_config_store.get_info(task_id, alice)
        assert read.url == config.url
        assert await replica.push_config_store.get_info(task_id, bob) == []
        dispatch = await replica.push_config_store.get_info_for_dispatch(task_id)
        assert [c.url for c in dispatch] == [config.url]
        await replica.push_config_store.delete_info(task_id, alice, 'c1')
        assert await backend.push_config_store.get_info_for_dispatch(task_id) == []

    @pytest.mark.asyncio
    async def test_namespaces_are_isolated(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        other_namespace = f'{backend.settings.namespace}x'
        other = self.create_backend(other_namespace)
        try:
            async with other:
                assert await other.task_store.get(writer.task_id, alice) is None
                listed = await other.task_store.list(ListTasksRequest(), alice)
                assert listed.total_size == 0
                # The same id is free in the other namespace.
                await TaskWriter(
                    other.task_store, alice, make_task(writer.task_id)
                ).create()
        finally:
            await self.destroy_namespace(other_namespace)
