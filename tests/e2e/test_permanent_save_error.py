"""On AWS, an artifact over DynamoDB's item limit fails the task everywhere.

A streamed 1 MB artifact cannot be saved (the backend's limit is 405504
bytes). The client gets the error naming the limit; the task ends FAILED
with that reason on every replica, a subscriber on another replica sees
FAILED, and the push receiver gets it once.
"""

from __future__ import annotations

import asyncio

import pytest
from a2a.helpers import new_text_message
from a2a.types.a2a_pb2 import (
    GetTaskRequest,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)

from a2a_scale.testing.replicas import ReplicaSet, connect

pytestmark = pytest.mark.e2e

TIMEOUT = 30.0
ALICE = 'alice'
LIMIT = '405504-byte limit'


@pytest.mark.parametrize('target', ['aws'], indirect=True)
@pytest.mark.aws
@pytest.mark.asyncio
async def test_an_artifact_over_the_item_limit_fails_the_task(
    replicas: ReplicaSet, webhook
) -> None:
    send = SendMessageRequest(
        message=new_text_message(f'big {1024 * 1024}', role=Role.ROLE_USER),
        configuration=SendMessageConfiguration(
            task_push_notification_config=TaskPushNotificationConfig(
                url=webhook.url, token='t'
            )
        ),
    )
    task_id = ''
    watched: list[int] = []
    async with (
        connect(replicas[0].url, token=ALICE) as on_a,
        connect(replicas[1].url, token=ALICE) as on_b,
    ):

        async def watch() -> None:
            async for response in on_b.subscribe(SubscribeToTaskRequest(id=task_id)):
                if response.HasField('status_update'):
                    watched.append(response.status_update.status.state)

        watcher: asyncio.Task[None] | None = None
        with pytest.raises(Exception, match=LIMIT):  # noqa: PT012
            async with asyncio.timeout(TIMEOUT):
                async for response in on_a.send_message(send):
                    if response.HasField('task') and not task_id:
                        task_id = response.task.id
                        watcher = asyncio.create_task(watch())
        assert task_id
        assert watcher is not None
        async with asyncio.timeout(TIMEOUT):
            await watcher
        assert watched[-1] == TaskState.TASK_STATE_FAILED

        for replica in replicas.replicas:
            async with connect(replica.url, token=ALICE) as client:
                task = await client.get_task(GetTaskRequest(id=task_id))
            assert task.status.state == TaskState.TASK_STATE_FAILED
            assert LIMIT in task.status.message.parts[0].text

    await webhook.wait_for(
        lambda: any(d.state == 'FAILED' for d in webhook.for_task(task_id))
    )
    await asyncio.sleep(0.5)  # a window for late duplicates from any replica
    assert [d.state for d in webhook.for_task(task_id)].count('FAILED') == 1
