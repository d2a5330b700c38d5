"""Save rules every store applies: finished tasks stay finished, ids are valid.

The contract:

- A re-save that keeps a task's terminal state (COMPLETED, FAILED,
  REJECTED) at the current version is accepted and bumps the version.
- A save that moves a terminal task to any other state is refused with
  `TerminalTaskError` (a `ConcurrentTaskModificationError`, so the SDK
  reloads the task and stops); the stored task is unchanged.
- A CANCELED write follows the SDK's rule: it overwrites a non-terminal task
  without a version check and is refused with
  `ConcurrentTaskModificationError` over a terminal or absent task.
- An empty task id is refused at save with `InvalidTaskIdError` (a
  `ValueError`), and nothing is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from a2a.server.cluster import ConcurrentTaskModificationError, TaskVersion
from a2a.types.a2a_pb2 import ListTasksRequest, Task, TaskState, TaskStatus

from a2a_scale.errors import InvalidTaskIdError, TerminalTaskError
from a2a_scale.testing.base import BackendFactory
from a2a_scale.testing.helpers import TaskWriter, make_task

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale.backend import Backend

WORKING = TaskState.TASK_STATE_WORKING
COMPLETED = TaskState.TASK_STATE_COMPLETED
FAILED = TaskState.TASK_STATE_FAILED
CANCELED = TaskState.TASK_STATE_CANCELED


class SaveRulesConformance(BackendFactory):
    """The finished-task rule and task-id validation of `save`."""

    @pytest.mark.asyncio
    @pytest.mark.parametrize('state', [COMPLETED, FAILED])
    async def test_resave_in_the_same_terminal_state_is_accepted(
        self, backend: Backend, alice: ServerCallContext, state: int
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        await writer.set_state(state)
        before = writer.version
        await writer.set_state(state, text='final answer')
        assert writer.version.is_after(before)
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        assert stored.version == writer.version
        assert stored.task.status.state == state

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ('terminal', 'then'),
        [(COMPLETED, WORKING), (CANCELED, WORKING), (COMPLETED, FAILED)],
    )
    async def test_a_terminal_task_never_changes_state(
        self, backend: Backend, alice: ServerCallContext, terminal: int, then: int
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        await writer.set_state(WORKING)
        await writer.set_state(terminal)
        stored = await backend.task_store.get(writer.task_id, alice)
        assert stored is not None
        with pytest.raises(TerminalTaskError) as caught:
            await writer.set_state(then)
        assert isinstance(caught.value, ConcurrentTaskModificationError)
        assert caught.value.task_id == writer.task_id
        after = await backend.task_store.get(writer.task_id, alice)
        assert after is not None
        assert (after.version, after.task.status.state) == (stored.version, terminal)

    @pytest.mark.asyncio
    async def test_cancel_of_a_terminal_task_is_refused(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()
        await writer.set_state(CANCELED)
        with pytest.raises(ConcurrentTaskModificationError):
            await writer.set_state(CANCELED)
        stale = TaskWriter(backend.task_store, alice, writer.task)
        stale.version = TaskVersion(1)
        with pytest.raises(ConcurrentTaskModificationError):
            await stale.set_state(CANCELED)

    @pytest.mark.asyncio
    async def test_empty_task_id_is_refused_at_save(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        task = Task(id='', context_id='ctx-1', status=TaskStatus(state=WORKING))
        with pytest.raises(InvalidTaskIdError):
            await backend.task_store.save(
                task,
                event=task,
                prev=None,
                prev_version=TaskVersion.MISSING,
                context=alice,
            )
        assert isinstance(InvalidTaskIdError('', 'x'), ValueError)
        listed = await backend.task_store.list(ListTasksRequest(), alice)
        assert [t.id for t in listed.tasks] == []
        writer = TaskWriter(backend.task_store, alice, make_task())
        await writer.create()  # the store still works, and lists the owner's task
        listed = await backend.task_store.list(ListTasksRequest(), alice)
        assert [t.id for t in listed.tasks] == [writer.task_id]
