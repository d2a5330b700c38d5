"""Checks every backend's operator view (`a2a_scale.ops`) passes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from a2a.server.cluster import TaskVersion
from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Part,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from a2a_scale.backend import Backend
from a2a_scale.errors import TerminalTaskError
from a2a_scale.ops import FeedEvent, UnknownTaskError, cancel_task, cluster_view
from a2a_scale.recovery import OwnerContext
from a2a_scale.tasks import version_int

WORKING = TaskState.TASK_STATE_WORKING
COMPLETED = TaskState.TASK_STATE_COMPLETED
INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED
CANCELED = TaskState.TASK_STATE_CANCELED

SEEDED = [
    ('ops-a', 'alice', 'ctx-1', WORKING),
    ('ops-b', 'bob', 'ctx-2', COMPLETED),
    ('ops-c', 'bob', 'ctx-1', INPUT_REQUIRED),
]
"""(task id, owner, context, state) of the tasks `seed` saves."""

SECRET = 'secret body'


def make_task(task_id: str, context_id: str, state: int) -> Task:
    """A task with a message and an artifact (bodies an operator must ask for)."""
    task = Task(
        id=task_id,
        context_id=context_id,
        status=TaskStatus(state=state),  # type: ignore[arg-type]
        history=[Message(message_id=f'{task_id}-m', parts=[Part(text=SECRET)])],
        artifacts=[
            Artifact(artifact_id='a1', name='report', parts=[Part(text=SECRET)])
        ],
    )
    task.status.timestamp.GetCurrentTime()
    return task


async def save(backend: Backend, owner: str, task: Task, prev: int = 0) -> int:
    """Saves `task` for `owner` with its status event; returns the new version."""
    context = OwnerContext.of(owner)
    stored = await backend.task_store.get(task.id, context) if prev else None
    version = await backend.task_store.save(
        task,
        event=TaskStatusUpdateEvent(
            task_id=task.id, context_id=task.context_id, status=task.status
        ),
        prev=stored.task if stored else None,
        prev_version=stored.version if stored else TaskVersion.MISSING,
        context=context,
    )
    return version_int(version)


async def seed(backend: Backend) -> None:
    """Saves the `SEEDED` tasks (two owners)."""
    for task_id, owner, context_id, state in SEEDED:
        await save(backend, owner, make_task(task_id, context_id, state))


async def check_listing(backend: Backend) -> None:
    """Every owner's tasks are listed, filtered, paged and found by id."""
    view = cluster_view(backend)
    page = await view.list_tasks()
    assert {(t.task.id, t.owner) for t in page.tasks} >= {
        (task_id, owner) for task_id, owner, _, _ in SEEDED
    }
    assert all(t.access == 'operator' for t in page.tasks)
    ours = [t for t in page.tasks if t.task.id.startswith('ops-')]
    assert [t.task.id for t in ours] == ['ops-c', 'ops-b', 'ops-a']  # newest first
    bob_in_1 = await view.list_tasks(state=INPUT_REQUIRED, context_id='ctx-1')
    assert [t.task.id for t in bob_in_1.tasks] == ['ops-c']
    first = await view.list_tasks(context_id='ctx-1', page_size=1)
    assert first.next_page_token
    assert first.total == 2
    second = await view.list_tasks(
        context_id='ctx-1', page_size=1, page_token=first.next_page_token
    )
    assert [t.task.id for t in first.tasks + second.tasks] == ['ops-c', 'ops-a']
    found = await view.find_task('ops-b')
    assert found is not None
    assert (found.owner, found.version) == ('bob', 1)
    assert await view.find_task('ops-none') is None


async def check_cancel(backend: Backend) -> None:
    """Operator cancel: any owner's task, terminal rule, unknown id."""
    cancelled = await cancel_task(backend, 'ops-a')
    assert cancelled.task.status.state == CANCELED
    assert cancelled.owner == 'alice'
    stored = await backend.task_store.get('ops-a', OwnerContext.of('alice'))
    assert stored is not None
    assert stored.task.status.state == CANCELED
    again = await cancel_task(backend, 'ops-a')
    assert again.version == cancelled.version  # already canceled: no new write
    with pytest.raises(TerminalTaskError, match='COMPLETED'):
        await cancel_task(backend, 'ops-b')
    with pytest.raises(UnknownTaskError, match='ops-none'):
        await cancel_task(backend, 'ops-none')


@contextlib.asynccontextmanager
async def following(backend: Backend) -> AsyncIterator[list[FeedEvent]]:
    """Collects `backend`'s feed in the background while the block runs."""
    seen: list[FeedEvent] = []
    events = cluster_view(backend).events()

    async def collect() -> None:
        async for item in events:
            seen.append(item)

    reader = asyncio.create_task(collect())
    try:
        yield seen
    finally:
        # redis-py may lose a cancel that lands inside a blocking read: ask again.
        while not reader.done():
            reader.cancel()
            await asyncio.wait([reader], timeout=0.5)
        if not reader.cancelled() and reader.exception() is not None:
            raise AssertionError('the feed failed') from reader.exception()
        await events.aclose()  # type: ignore[attr-defined]


async def check_tail(follower: Backend, writer: Backend) -> None:
    """`follower`'s feed sees, in order, what another replica saves.

    The feed starts at the present, once it is listening: the writer saves
    WORKING again until the feed has seen one, then COMPLETED.
    """
    async with following(follower) as seen:
        task = make_task('ops-tail', 'ctx-t', WORKING)
        version = 0
        async with asyncio.timeout(30):
            while not [e for e in seen if e.task_id == 'ops-tail']:
                version = await save(writer, 'carol', task, prev=version)
                await asyncio.sleep(0.5)
        task.status.state = COMPLETED
        version = await save(writer, 'carol', task, prev=version)
        async with asyncio.timeout(30):
            while seen[-1].version != version:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    mine = [e for e in seen if e.task_id == 'ops-tail']
    first = mine[0].version
    assert [e.version for e in mine] == list(range(first, version + 1))
    states = [e.event.status.state for e in mine]  # type: ignore[union-attr]
    assert states == [WORKING] * (len(mine) - 1) + [COMPLETED]
    assert all(e.saved_at is None or e.saved_at > 1e9 for e in mine)
