"""Conformance of `task_store.list`: the SDK's `ListTasks` contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from a2a.types.a2a_pb2 import ListTasksRequest, Task, TaskState
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import encode_page_token

from a2a_scale.testing.base import BackendFactory
from a2a_scale.testing.helpers import TaskWriter, make_task, new_id, timestamp

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale.backend import Backend

WORKING = TaskState.TASK_STATE_WORKING
COMPLETED = TaskState.TASK_STATE_COMPLETED


async def _create(backend: Backend, context: ServerCallContext, *tasks: Task) -> None:
    for task in tasks:
        await TaskWriter(backend.task_store, context, task).create()


async def _list_all(
    backend: Backend, context: ServerCallContext, **params: object
) -> list[str]:
    """Pages through the whole listing; returns the ids in order."""
    ids: list[str] = []
    token = ''
    for _ in range(1000):
        response = await backend.task_store.list(
            ListTasksRequest(page_token=token, **params),  # type: ignore[arg-type]
            context,
        )
        ids.extend(t.id for t in response.tasks)
        token = response.next_page_token
        if not token:
            return ids
    raise AssertionError('the listing never ended')


class ListTasksConformance(BackendFactory):
    """Filters, order, keyset pages and `total_size` of `ListTasks`."""

    @pytest.mark.asyncio
    async def test_lists_newest_first_then_by_id_then_untimed(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        old = make_task('t-old', at=timestamp(1))
        new = make_task('t-new', at=timestamp(3))
        tie_a = make_task('t-tie-a', at=timestamp(2))
        tie_b = make_task('t-tie-b', at=timestamp(2))
        untimed_a = make_task('t-none-a')
        untimed_b = make_task('t-none-b')
        await _create(backend, alice, untimed_a, old, tie_a, new, untimed_b, tie_b)
        response = await backend.task_store.list(ListTasksRequest(), alice)
        assert [t.id for t in response.tasks] == [
            't-new',
            't-tie-b',
            't-tie-a',
            't-old',
            't-none-b',
            't-none-a',
        ]
        assert response.total_size == 6
        assert response.next_page_token == ''

    @pytest.mark.asyncio
    async def test_listed_tasks_are_complete(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        task = make_task(at=timestamp(1))
        task.metadata['k'] = 'v'
        await _create(backend, alice, task)
        response = await backend.task_store.list(ListTasksRequest(), alice)
        assert list(response.tasks) == [task]

    @pytest.mark.asyncio
    async def test_listing_reflects_updates(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        first = TaskWriter(backend.task_store, alice, make_task('a', at=timestamp(1)))
        second = TaskWriter(backend.task_store, alice, make_task('b', at=timestamp(2)))
        await first.create()
        await second.create()
        await first.set_state(COMPLETED)  # stamped now: the newest
        response = await backend.task_store.list(ListTasksRequest(), alice)
        assert [t.id for t in response.tasks] == ['a', 'b']
        assert response.tasks[0].status.state == COMPLETED

    @pytest.mark.asyncio
    async def test_filters_by_context_id(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await _create(
            backend,
            alice,
            make_task('a', context_id='c1', at=timestamp(1)),
            make_task('b', context_id='c2', at=timestamp(2)),
            make_task('c', context_id='c1', at=timestamp(3)),
        )
        response = await backend.task_store.list(
            ListTasksRequest(context_id='c1'), alice
        )
        assert [t.id for t in response.tasks] == ['c', 'a']
        assert response.total_size == 2

    @pytest.mark.asyncio
    async def test_filters_by_status(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await _create(
            backend,
            alice,
            make_task('a', state=WORKING, at=timestamp(1)),
            make_task('b', state=COMPLETED, at=timestamp(2)),
            make_task('c', state=WORKING, at=timestamp(3)),
        )
        response = await backend.task_store.list(
            ListTasksRequest(status=WORKING), alice
        )
        assert [t.id for t in response.tasks] == ['c', 'a']
        assert response.total_size == 2

    @pytest.mark.asyncio
    async def test_filters_by_status_timestamp_after_inclusive(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await _create(
            backend,
            alice,
            make_task('a', at=timestamp(1)),
            make_task('b', at=timestamp(2)),
            make_task('c', at=timestamp(3)),
            make_task('untimed'),
        )
        request = ListTasksRequest()
        request.status_timestamp_after.FromDatetime(timestamp(2))
        response = await backend.task_store.list(request, alice)
        assert [t.id for t in response.tasks] == ['c', 'b']
        assert response.total_size == 2

    @pytest.mark.asyncio
    async def test_combined_filters(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await _create(
            backend,
            alice,
            make_task('a', context_id='c1', state=WORKING, at=timestamp(3)),
            make_task('b', context_id='c1', state=COMPLETED, at=timestamp(4)),
            make_task('c', context_id='c2', state=WORKING, at=timestamp(5)),
            make_task('d', context_id='c1', state=WORKING, at=timestamp(1)),
        )
        request = ListTasksRequest(context_id='c1', status=WORKING)
        request.status_timestamp_after.FromDatetime(timestamp(2))
        response = await backend.task_store.list(request, alice)
        assert [t.id for t in response.tasks] == ['a']
        assert response.total_size == 1

    @pytest.mark.asyncio
    async def test_pages_cover_everything_once_with_total_on_each_page(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        tasks = [make_task(f't{i:02}', at=timestamp(i % 3)) for i in range(7)]
        tasks.append(make_task('untimed'))
        await _create(backend, alice, *tasks)
        full = await backend.task_store.list(ListTasksRequest(), alice)
        pages: list[list[str]] = []
        token = ''
        while True:
            response = await backend.task_store.list(
                ListTasksRequest(page_size=3, page_token=token), alice
            )
            assert response.total_size == 8
            assert len(response.tasks) <= 3
            pages.append([t.id for t in response.tasks])
            token = response.next_page_token
            if not token:
                break
        assert [len(p) for p in pages] == [3, 3, 2]
        assert [i for p in pages for i in p] == [t.id for t in full.tasks]

    @pytest.mark.asyncio
    async def test_exact_last_page_has_no_token(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await _create(backend, alice, *(make_task(at=timestamp(i)) for i in range(4)))
        first = await backend.task_store.list(ListTasksRequest(page_size=2), alice)
        assert first.next_page_token
        second = await backend.task_store.list(
            ListTasksRequest(page_size=2, page_token=first.next_page_token), alice
        )
        assert len(second.tasks) == 2
        assert second.next_page_token == ''

    @pytest.mark.asyncio
    async def test_default_page_size_is_50(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await _create(backend, alice, *(make_task(at=timestamp(i)) for i in range(53)))
        response = await backend.task_store.list(ListTasksRequest(), alice)
        assert len(response.tasks) == 50
        assert response.total_size == 53
        assert response.next_page_token
        rest = await backend.task_store.list(
            ListTasksRequest(page_token=response.next_page_token), alice
        )
        assert len(rest.tasks) == 3

    @pytest.mark.asyncio
    async def test_page_token_survives_deletion_of_its_task(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await _create(
            backend, alice, *(make_task(f't{i}', at=timestamp(i)) for i in range(5))
        )
        first = await backend.task_store.list(ListTasksRequest(page_size=2), alice)
        assert [t.id for t in first.tasks] == ['t4', 't3']
        await backend.task_store.delete('t3', alice)
        rest = await backend.task_store.list(
            ListTasksRequest(page_size=10, page_token=first.next_page_token), alice
        )
        assert [t.id for t in rest.tasks] == ['t2', 't1', 't0']

    @pytest.mark.asyncio
    async def test_filtered_pages_use_filtered_order(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await _create(
            backend,
            alice,
            *(
                make_task(f't{i}', context_id=f'c{i % 2}', at=timestamp(i))
                for i in range(9)
            ),
        )
        ids = await _list_all(backend, alice, context_id='c1', page_size=2)
        assert ids == ['t7', 't5', 't3', 't1']

    @pytest.mark.asyncio
    @pytest.mark.parametrize('token', ['!!!', 'bm90LWEtdGFzaw', 'eyJ0cyI6MX0'])
    async def test_invalid_page_token_is_rejected(
        self, backend: Backend, alice: ServerCallContext, token: str
    ) -> None:
        await _create(backend, alice, make_task(at=timestamp(1)))
        with pytest.raises(InvalidParamsError):
            await backend.task_store.list(ListTasksRequest(page_token=token), alice)

    @pytest.mark.asyncio
    async def test_legacy_page_token_starts_at_named_task(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        await _create(
            backend, alice, *(make_task(f't{i}', at=timestamp(i)) for i in range(4))
        )
        response = await backend.task_store.list(
            ListTasksRequest(page_token=encode_page_token('t2')), alice
        )
        assert [t.id for t in response.tasks] == ['t2', 't1', 't0']

    @pytest.mark.asyncio
    async def test_empty_listing(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        response = await backend.task_store.list(
            ListTasksRequest(context_id=new_id('ctx')), alice
        )
        assert list(response.tasks) == []
        assert response.total_size == 0
        assert response.next_page_token == ''

    @pytest.mark.asyncio
    async def test_lists_only_the_callers_tasks(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        await _create(backend, alice, make_task('a1', at=timestamp(1)))
        await _create(backend, alice, make_task('a2', at=timestamp(3)))
        await _create(backend, bob, make_task('b1', at=timestamp(2)))
        mine = await backend.task_store.list(ListTasksRequest(), alice)
        theirs = await backend.task_store.list(ListTasksRequest(), bob)
        assert [t.id for t in mine.tasks] == ['a2', 'a1']
        assert mine.total_size == 2
        assert [t.id for t in theirs.tasks] == ['b1']
        assert theirs.total_size == 1
