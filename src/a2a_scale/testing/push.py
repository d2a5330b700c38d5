"""Conformance of `Backend.push_config_store`: owners, dispatch, sharing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from a2a.types.a2a_pb2 import AuthenticationInfo, TaskPushNotificationConfig

from a2a_scale.testing.base import BackendFactory
from a2a_scale.testing.helpers import new_id

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale.backend import Backend


def _config(
    config_id: str = '', url: str = 'https://hooks.example/a'
) -> TaskPushNotificationConfig:
    return TaskPushNotificationConfig(
        id=config_id,
        url=url,
        token='tok',
        authentication=AuthenticationInfo(scheme='Bearer', credentials='secret'),
    )


def _by_id(configs: list[TaskPushNotificationConfig]) -> dict[str, str]:
    return {c.id: c.url for c in configs}


class PushConfigConformance(BackendFactory):
    """The `PushNotificationConfigStore` contract, dispatch included."""

    @pytest.mark.asyncio
    async def test_set_info_returns_normalized_copy(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        task_id = new_id()
        request = _config()
        stored = await backend.push_config_store.set_info(task_id, request, alice)
        assert stored is not None
        assert stored.task_id == task_id
        assert stored.id == task_id  # an empty id defaults to the task id
        assert stored.url == request.url
        assert stored.authentication.credentials == 'secret'
        assert request.task_id == ''  # the input is untouched
        assert request.id == ''
        assert await backend.push_config_store.get_info(task_id, alice) == [stored]

    @pytest.mark.asyncio
    async def test_several_configs_per_task_and_same_id_replaces(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        task_id = new_id()
        store = backend.push_config_store
        await store.set_info(task_id, _config('c1', 'https://a.example/1'), alice)
        await store.set_info(task_id, _config('c2', 'https://a.example/2'), alice)
        await store.set_info(task_id, _config('c1', 'https://a.example/1b'), alice)
        assert _by_id(await store.get_info(task_id, alice)) == {
            'c1': 'https://a.example/1b',
            'c2': 'https://a.example/2',
        }

    @pytest.mark.asyncio
    async def test_configs_are_per_task(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        one, two = new_id(), new_id()
        await backend.push_config_store.set_info(one, _config('c'), alice)
        assert await backend.push_config_store.get_info(two, alice) == []
        assert await backend.push_config_store.get_info_for_dispatch(two) == []

    @pytest.mark.asyncio
    async def test_get_info_is_owner_scoped(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        task_id = new_id()
        store = backend.push_config_store
        await store.set_info(task_id, _config('a', 'https://alice.example'), alice)
        assert await store.get_info(task_id, bob) == []
        await store.set_info(task_id, _config('a', 'https://bob.example'), bob)
        assert _by_id(await store.get_info(task_id, alice)) == {
            'a': 'https://alice.example'
        }
        assert _by_id(await store.get_info(task_id, bob)) == {
            'a': 'https://bob.example'
        }

    @pytest.mark.asyncio
    async def test_dispatch_sees_every_owner(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        task_id = new_id()
        store = backend.push_config_store
        await store.set_info(task_id, _config('a', 'https://alice.example'), alice)
        await store.set_info(task_id, _config('b', 'https://bob.example'), bob)
        dispatch = await store.get_info_for_dispatch(task_id)
        assert sorted(c.url for c in dispatch) == [
            'https://alice.example',
            'https://bob.example',
        ]
        assert all(c.task_id == task_id for c in dispatch)

    @pytest.mark.asyncio
    async def test_delete_one_config(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        task_id = new_id()
        store = backend.push_config_store
        await store.set_info(task_id, _config('c1'), alice)
        await store.set_info(task_id, _config('c2'), alice)
        await store.delete_info(task_id, alice, 'c1')
        assert list(_by_id(await store.get_info(task_id, alice))) == ['c2']
        await store.delete_info(task_id, alice, 'unknown')
        assert list(_by_id(await store.get_info(task_id, alice))) == ['c2']

    @pytest.mark.asyncio
    async def test_delete_all_configs_of_the_caller_only(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        task_id = new_id()
        store = backend.push_config_store
        await store.set_info(task_id, _config('c1'), alice)
        await store.set_info(task_id, _config('c2'), alice)
        await store.set_info(task_id, _config('b1'), bob)
        await store.delete_info(task_id, alice)
        assert await store.get_info(task_id, alice) == []
        assert list(_by_id(await store.get_info(task_id, bob))) == ['b1']
        assert list(_by_id(await store.get_info_for_dispatch(task_id))) == ['b1']

    @pytest.mark.asyncio
    async def test_other_owner_cannot_delete(
        self, backend: Backend, alice: ServerCallContext, bob: ServerCallContext
    ) -> None:
        task_id = new_id()
        store = backend.push_config_store
        await store.set_info(task_id, _config('c1'), alice)
        await store.delete_info(task_id, bob, 'c1')
        await store.delete_info(task_id, bob)
        assert list(_by_id(await store.get_info(task_id, alice))) == ['c1']

    @pytest.mark.asyncio
    async def test_returned_configs_are_copies(
        self, backend: Backend, alice: ServerCallContext
    ) -> None:
        task_id = new_id()
        store = backend.push_config_store
        stored = await store.set_info(task_id, _config('c1'), alice)
        assert stored is not None
        stored.url = 'https://mutated.example'
        (read,) = await store.get_info(task_id, alice)
        read.url = 'https://mutated-again.example'
        (again,) = await store.get_info_for_dispatch(task_id)
        assert again.url == 'https://hooks.example/a'
