"""Conformance of `Backend.task_store`: CAS, cancel, get, delete, owners."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

import pytest
from a2a.server.cluster import ConcurrentTaskModificationError, TaskVersion
from a2a.types.a2a_pb2 import (
    Artifact,
    Part,
    Task,
    TaskState,
)
from google.protobuf.struct_pb2 import Struct

from a2a_scale.testing.base import BackendFactory
from a2a_scale.testing.helpers import TaskWriter, agent_message, make_task, new_id

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale.backend import Backend

WORKING = TaskState.TASK_STATE_WORKING
COMPLETED = TaskState.TASK_STATE_COMPLETED
CANCELED = TaskState.TASK_STATE_CANCELED
FAILED = TaskState.TASK_STATE_FAILED


def _with_state(task: Task, state: int) -> Task:
    copy = Task()
    copy.CopyFrom(task)
    copy.status.state = state  # type: ignore[assignment]
    return copy


async def _increment(
    writer_store: Backend, context: ServerCallContext, task_id: str, times: int
) -> int:
    """Adds 1 to the task's ``count`` metadata `times` times; returns conflicts."""
    store = writer_store.task_store
    conflicts = 0
    done = 0
    while done < times:
        stored = await store.get(task_id, context)
        assert stored is not None
        task = Task()
        task.CopyFrom(stored.task)
        task.metadata['count'] = task.metadata['count'] + 1
        await asyncio.sleep(0)  # let other writers read the same version
        try:
            await store.save(
                task,
                event=None,
                prev=stored.task,
                prev_version=stored.version,
                context=context,
            )
        except ConcurrentTaskModificationError:
            conflicts += 1
        else:
            done += 1
    return conflicts


class TaskStoreConformance(BackendFactory):
    """The `VersionedTaskStore` contract for one replica."""

    @pytest.mark.asyncio
    async def test_first_write_then_get_returns_task_and_version(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task == writer.task
        assert stored.version == writer.version
        assert not stored.version.is_missing

    @pytest.mark.asyncio
    async def test_versions_increase_with_every_write(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        versions = [writer.version]
        for i in range(11):  # past 9 -> 10, where string versions misorder
            await writer.set_state(WORKING, text=f'step {i}')
            versions.append(writer.version)
        for older, newer in itertools.pairwise(versions):
            assert newer.is_after(older), (older, newer)
            assert not older.is_after(newer)

    @pytest.mark.asyncio
    async def test_get_unknown_task_returns_none(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        assert await backend.task_store.get(new_id(), alice) is None

    @pytest.mark.asyncio
    async def test_round_trip_keeps_every_field(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        task = make_task(state=WORKING)
        task.history.append(agent_message('hello', task_id=task.id))
        task.artifacts.append(Artifact(artifact_id='a1', parts=[Part(text='x' * 5000)]))
        metadata = Struct()
        metadata.update({'k': 'v', 'n': 3, 'nested': {'a': [1, 2]}})
        task.metadata.CopyFrom(metadata)
        task.status.message.CopyFrom(agent_message('working', task_id=task.id))
        writer = TaskWriter(backend.task_store, alice, task)
        await writer.create()
        stored = await backend.task_store.get(task.id, alice)
        assert stored is not None
        assert stored.task == task

    @pytest.mark.asyncio
    async def test_stale_version_is_rejected_and_changes_nothing(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        stale = writer.version
        await writer.set_state(WORKING)
        with pytest.raises(ConcurrentTaskModificationError):
            await backend.task_store.save(
                _with_state(writer.task, COMPLETED),
                event=None,
                prev=None,
                prev_version=stale,
                context=alice,
            )
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task.status.state == WORKING
        assert stored.version == writer.version

    @pytest.mark.asyncio
    async def test_first_write_to_existing_id_is_rejected(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        with pytest.raises(ConcurrentTaskModificationError):
            await backend.task_store.save(
                make_task(writer.task_id, context_id='other'),
                event=None,
                prev=None,
                prev_version=TaskVersion.MISSING,
                context=alice,
            )
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task.context_id == 'ctx-1'

    @pytest.mark.asyncio
    async def test_update_of_absent_task_is_rejected(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        with pytest.raises(ConcurrentTaskModificationError):
            await backend.task_store.save(
                make_task(),
                event=None,
                prev=None,
                prev_version=writer.version,
                context=alice,
            )

    @pytest.mark.asyncio
    async def test_cancel_overwrites_non_terminal_task_without_version_check(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        stale = writer.version
        await writer.set_state(WORKING)
        await writer.set_state(WORKING, text='more')
        version = await backend.task_store.save(
            _with_state(writer.task, CANCELED),
            event=None,
            prev=None,
            prev_version=stale,
            context=alice,
        )
        assert version.is_after(writer.version)
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task.status.state == CANCELED
        assert stored.version == version
        # The writer that still holds the old version loses.
        with pytest.raises(ConcurrentTaskModificationError):
            await writer.set_state(COMPLETED)

    @pytest.mark.asyncio
    @pytest.mark.parametrize('terminal', [COMPLETED, FAILED, CANCELED])
    async def test_cancel_of_terminal_task_is_rejected(
        self, backend: Backend, alice: ServerCallContext, terminal: int
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        await writer.set_state(terminal)
        with pytest.raises(ConcurrentTaskModificationError):
            await backend.task_store.save(
                _with_state(writer.task, CANCELED),
                event=None,
                prev=None,
                prev_version=writer.version,
                context=alice,
            )
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task.status.state == terminal
        assert stored.version == writer.version

    @pytest.mark.asyncio
    @pytest.mark.parametrize('prev_version', [TaskVersion.MISSING, TaskVersion(1)])
    async def test_cancel_of_absent_task_is_rejected(
        self, backend: Backend, alice: ServerCallContext, prev_version: TaskVersion
    ) -> None:
        task = make_task(state=CANCELED)
        with pytest.raises(ConcurrentTaskModificationError):
            await backend.task_store.save(
                task, event=None, prev=None, prev_version=prev_version, context=alice
            )
        assert await backend.task_store.get(task.id, alice) is None

    @pytest.mark.asyncio
    async def test_store_keeps_no_reference_to_callers_objects(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        task = make_task()
        writer = TaskWriter(backend.task_store, alice, task)
        await writer.create()
        writer.task.status.state = FAILED  # the SDK mutates its snapshot
        first = await backend.task_store.get(task.id, alice)
        assert first is not None
        assert first.task.status.state == TaskState.TASK_STATE_SUBMITTED
        first.task.context_id = 'mutated'
        second = await backend.task_store.get(task.id, alice)
        assert second is not None
        assert second.task.context_id == 'ctx-1'

    @pytest.mark.asyncio
    async def test_delete_removes_task_and_id_can_be_reused(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        await backend.task_store.delete(writer.task_id, alice)
        assert await backend.task_store.get(writer.task_id, alice) is None
        again = TaskWriter(
            backend.task_store, alice, make_task(writer.task_id, context_id='new')
        )
        await again.create()
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task.context_id == 'new'

    @pytest.mark.asyncio
    async def test_delete_of_unknown_task_is_a_no_op(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await backend.task_store.delete(new_id(), alice)

    @pytest.mark.asyncio
    async def test_concurrent_first_writes_have_one_winner(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        task_id = new_id()

        async def create(n: int) -> bool:
            try:
                await backend.task_store.save(
                    make_task(task_id, context_id=f'ctx-{n}'),
                    event=None,
                    prev=None,
                    prev_version=TaskVersion.MISSING,
                    context=alice,
                )
            except ConcurrentTaskModificationError:
                return False
            return True

        results = await asyncio.gather(*(create(n) for n in range(8)))
        assert results.count(True) == 1
        stored = await backend.task_store.get(task_id, alice)
        assert stored is not None
        assert stored.task.context_id == f'ctx-{results.index(True)}'

    @pytest.mark.asyncio
    async def test_concurrent_writers_lose_no_update(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writers, increments = 6, 8
        task = make_task()
        task.metadata['count'] = 0
        await TaskWriter(backend.task_store, alice, task).create()
        conflicts = await asyncio.gather(
            *(_increment(backend, alice, task.id, increments) for _ in range(writers))
        )
        stored = await backend.task_store.get(task.id, alice)
        assert stored is not None
        assert stored.task.metadata['count'] == writers * increments
        assert sum(conflicts) > 0, 'the writers never raced; the test proves nothing'

    @pytest.mark.asyncio
    async def test_cancel_wins_over_concurrent_updates(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        results = await asyncio.gather(
            writer.set_state(WORKING),
            backend.task_store.save(
                _with_state(writer.task, CANCELED),
                event=None,
                prev=None,
                prev_version=writer.version,
                context=alice,
            ),
            return_exceptions=True,
        )
        assert not isinstance(results[1], BaseException), results[1]
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task.status.state == CANCELED


class OwnerIsolationConformance(BackendFactory):
    """Tasks of one owner are invisible and immutable to another."""

    @pytest.mark.asyncio
    async def test_other_owner_cannot_get(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        assert await backend.task_store.get(writer.task_id, bob) is None

    @pytest.mark.asyncio
    async def test_other_owner_cannot_delete(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        await backend.task_store.delete(writer.task_id, bob)
        assert await backend.task_store.get(writer.task_id, alice) is not None

    @pytest.mark.asyncio
    async def test_other_owner_cannot_create_same_id(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        with pytest.raises(ConcurrentTaskModificationError):
            await backend.task_store.save(
                make_task(writer.task_id, context_id='bobs'),
                event=None,
                prev=None,
                prev_version=TaskVersion.MISSING,
                context=bob,
            )
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task.context_id == 'ctx-1'
        assert stored.version == writer.version

    @pytest.mark.asyncio
    async def test_other_owner_cannot_update_even_with_current_version(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        with pytest.raises(ConcurrentTaskModificationError):
            await backend.task_store.save(
                _with_state(writer.task, COMPLETED),
                event=None,
                prev=None,
                prev_version=writer.version,
                context=bob,
            )
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task.status.state == TaskState.TASK_STATE_SUBMITTED

    @pytest.mark.asyncio
    async def test_other_owner_cannot_cancel(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        with pytest.raises(ConcurrentTaskModificationError):
            await backend.task_store.save(
                _with_state(writer.task, CANCELED),
                event=None,
                prev=None,
                prev_version=writer.version,
                context=bob,
            )
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.task.status.state == TaskState.TASK_STATE_SUBMITTED
