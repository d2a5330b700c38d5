"""A caller never reaches another caller's task, on any replica or operation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from a2a.helpers import new_text_message
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import A2AError, TaskNotFoundError

from a2a_scale.testing.replicas import ReplicaSet, connect

pytestmark = pytest.mark.e2e

TIMEOUT = 20.0
ALICE, BOB = 'alice', 'bob'


async def refused(operation: Callable[[], Awaitable[Any]]) -> bool:
    """Whether the server answered `operation` as if the task did not exist."""
    try:
        await asyncio.wait_for(operation(), TIMEOUT)
    except TaskNotFoundError:
        return True
    return False


@pytest.mark.asyncio
async def test_cross_tenant_access_is_refused_on_every_operation(
    replicas: ReplicaSet, webhook
) -> None:
    async with connect(replicas[0].url, token=ALICE) as alice:
        async with asyncio.timeout(TIMEOUT):
            responses = [
                r
                async for r in alice.send_message(
                    SendMessageRequest(
                        message=new_text_message('ask', role=Role.ROLE_USER)
                    )
                )
            ]
        task = responses[0].task
        assert (
            responses[-1].status_update.status.state
            == TaskState.TASK_STATE_INPUT_REQUIRED
        )
        config = await alice.create_task_push_notification_config(
            TaskPushNotificationConfig(
                task_id=task.id, id='alice-hook', url=webhook.url
            )
        )

    for replica in replicas.replicas:
        async with connect(replica.url, token=BOB) as bob:

            async def subscribe() -> None:
                async for _ in bob.subscribe(SubscribeToTaskRequest(id=task.id)):
                    pass

            async def follow_up() -> None:
                message = new_text_message(
                    'hijack',
                    role=Role.ROLE_USER,
                    task_id=task.id,
                    context_id=task.context_id,
                )
                async for _ in bob.send_message(SendMessageRequest(message=message)):
                    pass

            where = f'on replica {replica.name}'
            assert await refused(lambda: bob.get_task(GetTaskRequest(id=task.id))), (
                where
            )
            assert await refused(
                lambda: bob.cancel_task(CancelTaskRequest(id=task.id))
            ), where
            assert await refused(subscribe), where
            assert await refused(follow_up), where
            assert await refused(
                lambda: bob.get_task_push_notification_config(
                    GetTaskPushNotificationConfigRequest(task_id=task.id, id=config.id)
                )
            ), where
            assert await refused(
                lambda: bob.delete_task_push_notification_config(
                    DeleteTaskPushNotificationConfigRequest(
                        task_id=task.id, id=config.id
                    )
                )
            ), where
            assert await refused(
                lambda: bob.create_task_push_notification_config(
                    TaskPushNotificationConfig(
                        task_id=task.id, id='bob-hook', url=webhook.url + '?bob'
                    )
                )
            ), where
            listed = await bob.list_tasks(ListTasksRequest())
            assert list(listed.tasks) == [], where
            assert listed.total_size == 0, where
            try:
                configs = await bob.list_task_push_notification_configs(
                    ListTaskPushNotificationConfigsRequest(task_id=task.id)
                )
            except A2AError:
                pass
            else:
                assert list(configs.configs) == [], where

    # Alice's task and push config are untouched, as seen from every replica.
    for replica in replicas.replicas:
        async with connect(replica.url, token=ALICE) as alice:
            current = await alice.get_task(GetTaskRequest(id=task.id))
            assert current.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            assert current.history == task.history or len(current.history) >= 1
            assert 'hijack' not in str(current)
            configs = await alice.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task.id)
            )
            assert [(c.id, c.url) for c in configs.configs] == [
                ('alice-hook', webhook.url)
            ]
            listed = await alice.list_tasks(ListTasksRequest())
            assert [t.id for t in listed.tasks] == [task.id]
