"""Three replicas sharing one backend, driven by the SDK's own client."""

from __future__ import annotations

import asyncio
import pathlib

import pytest
from a2a.helpers import get_artifact_text, new_text_message
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)

from a2a_scale.testing.replicas import ReplicaSet, connect

pytestmark = pytest.mark.e2e

TIMEOUT = 20.0
ALICE = 'alice'


def request(text: str, **message_fields: str) -> SendMessageRequest:
    message = new_text_message(text, role=Role.ROLE_USER)
    for name, value in message_fields.items():
        setattr(message, name, value)
    return SendMessageRequest(message=message)


def step_of(message: Message) -> int | None:
    return int(message.metadata['step']) if 'step' in message.metadata else None


def steps_in_snapshot(task: Task) -> list[int]:
    messages = [*task.history, task.status.message]
    return [s for m in messages if (s := step_of(m)) is not None]


def live_step(response: StreamResponse) -> int | None:
    if response.HasField('status_update'):
        return step_of(response.status_update.status.message)
    return None


def state_of(response: StreamResponse) -> int | None:
    if response.HasField('status_update'):
        return response.status_update.status.state
    if response.HasField('task'):
        return response.task.status.state
    return None


async def states_everywhere(replicas: ReplicaSet, task_id: str) -> list[int]:
    states = []
    for replica in replicas.replicas:
        async with connect(replica.url, token=ALICE) as client:
            task = await client.get_task(GetTaskRequest(id=task_id))
            states.append(task.status.state)
    return states


@pytest.mark.asyncio
async def test_resubscribe_on_b_replays_snapshot_then_live_without_gap(
    replicas: ReplicaSet,
) -> None:
    total = 12
    first_seen: list[int] = []
    task_id = ''
    async with connect(replicas[0].url, token=ALICE) as client:
        stream = client.send_message(request(f'stream {total} 60'))
        async with asyncio.timeout(TIMEOUT):
            async for response in stream:
                if response.HasField('task'):
                    task_id = response.task.id
                if (step := live_step(response)) is not None:
                    first_seen.append(step)
                    if step == 3:
                        break
        await stream.aclose()  # type: ignore[attr-defined]
    assert task_id
    assert first_seen == [1, 2, 3]

    replayed: list[int] = []
    live: list[int] = []
    served_by: set[str] = set()
    final_state = None
    artifacts: list[str] = []
    async with connect(replicas[1].url, token=ALICE) as client:
        async with asyncio.timeout(TIMEOUT):
            async for response in client.subscribe(SubscribeToTaskRequest(id=task_id)):
                if response.HasField('task'):
                    assert not replayed, 'a second snapshot was sent'
                    assert response.task.id == task_id
                    replayed = steps_in_snapshot(response.task)
                elif (step := live_step(response)) is not None:
                    live.append(step)
                    served_by.add(
                        str(response.status_update.status.message.metadata['served_by'])
                    )
                if response.HasField('artifact_update'):
                    artifacts.append(
                        get_artifact_text(response.artifact_update.artifact)
                    )
                if (state := state_of(response)) is not None:
                    final_state = state

    assert replayed[:3] == first_seen, 'the snapshot lost what the first stream saw'
    assert live, 'nothing streamed live after the snapshot'
    assert replayed + live == list(range(1, total + 1)), 'gap, duplicate or reorder'
    assert final_state == TaskState.TASK_STATE_COMPLETED
    assert artifacts == [f'{total} steps']
    assert served_by == {replicas[0].url}, 'the agent should have run on A only'
    assert (
        await states_everywhere(replicas, task_id)
        == [TaskState.TASK_STATE_COMPLETED] * 3
    )


@pytest.mark.asyncio
async def test_cancel_from_c_stops_the_agent_running_on_a(
    replicas: ReplicaSet, probe_dir: pathlib.Path
) -> None:
    task_id = ''
    ended = None
    ticks_before_cancel = 0
    async with (
        connect(replicas[0].url, token=ALICE) as on_a,
        connect(replicas[2].url, token=ALICE) as on_c,
    ):
        async with asyncio.timeout(TIMEOUT):
            async for response in on_a.send_message(request('hold')):
                if response.HasField('task'):
                    task_id = task_id or response.task.id
                step = live_step(response)
                if step == 2:
                    ticks_before_cancel = step
                    cancelled = await on_c.cancel_task(CancelTaskRequest(id=task_id))
                    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
                if (state := state_of(response)) is not None:
                    ended = state
    assert ticks_before_cancel == 2
    assert ended == TaskState.TASK_STATE_CANCELED, (
        'the stream on A did not end CANCELED'
    )

    probe = probe_dir / f'{task_id}.cancelled'
    async with asyncio.timeout(TIMEOUT):
        while not probe.exists():  # noqa: ASYNC110 (the agent may be in another process)
            await asyncio.sleep(0.02)
    assert probe.read_text() == replicas[0].url, (
        'the agent on A did not observe the cancel'
    )

    async with connect(replicas[1].url, token=ALICE) as client:
        before = await client.get_task(GetTaskRequest(id=task_id))
        await asyncio.sleep(0.3)  # several agent ticks: nothing may be written
        after = await client.get_task(GetTaskRequest(id=task_id))
    assert before == after
    assert (
        await states_everywhere(replicas, task_id)
        == [TaskState.TASK_STATE_CANCELED] * 3
    )


@pytest.mark.asyncio
async def test_cancel_from_c_stops_an_idle_agent_on_a(
    replicas: ReplicaSet, probe_dir: pathlib.Path
) -> None:
    """An agent that writes nothing after starting still sees C's cancel."""
    task_id = ''
    ended = None
    async with (
        connect(replicas[0].url, token=ALICE) as on_a,
        connect(replicas[2].url, token=ALICE) as on_c,
    ):
        async with asyncio.timeout(TIMEOUT):
            async for response in on_a.send_message(request('idle')):
                if response.HasField('task'):
                    task_id = task_id or response.task.id
                if live_step(response) == 1:
                    cancelled = await on_c.cancel_task(CancelTaskRequest(id=task_id))
                    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
                if (state := state_of(response)) is not None:
                    ended = state
    assert ended == TaskState.TASK_STATE_CANCELED

    probe = probe_dir / f'{task_id}.cancelled'
    async with asyncio.timeout(TIMEOUT):
        while not probe.exists():  # noqa: ASYNC110 (the agent may be in another process)
            await asyncio.sleep(0.02)
    assert probe.read_text() == replicas[0].url, 'the idle agent on A was not stopped'
    assert (
        await states_everywhere(replicas, task_id)
        == [TaskState.TASK_STATE_CANCELED] * 3
    )


@pytest.mark.asyncio
async def test_input_required_follow_up_on_b_is_seen_by_subscriber_on_a(
    replicas: ReplicaSet,
) -> None:
    task_id = context_id = ''
    async with connect(replicas[0].url, token=ALICE) as on_a:
        async with asyncio.timeout(TIMEOUT):
            async for response in on_a.send_message(request('ask')):
                if response.HasField('task'):
                    task_id, context_id = response.task.id, response.task.context_id
                last = state_of(response)
        assert last == TaskState.TASK_STATE_INPUT_REQUIRED

        subscribed = asyncio.Event()
        seen_on_a: list[StreamResponse] = []

        async def watch() -> None:
            async for response in on_a.subscribe(SubscribeToTaskRequest(id=task_id)):
                seen_on_a.append(response)
                subscribed.set()

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.wait_for(subscribed.wait(), TIMEOUT)
            assert seen_on_a[0].task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

            follow_up = request('large', task_id=task_id, context_id=context_id)
            async with connect(replicas[1].url, token=ALICE) as on_b:
                async with asyncio.timeout(TIMEOUT):
                    responses = [r async for r in on_b.send_message(follow_up)]
            assert state_of(responses[-1]) == TaskState.TASK_STATE_COMPLETED
            await asyncio.wait_for(watcher, TIMEOUT)
        finally:
            watcher.cancel()

    states = [s for r in seen_on_a if (s := state_of(r)) is not None]
    assert states[-1] == TaskState.TASK_STATE_COMPLETED, 'A never saw the completion'
    artifacts = [
        get_artifact_text(r.artifact_update.artifact)
        for r in seen_on_a
        if r.HasField('artifact_update')
    ]
    assert artifacts == ['answer: large']
    assert (
        await states_everywhere(replicas, task_id)
        == [TaskState.TASK_STATE_COMPLETED] * 3
    )


@pytest.mark.asyncio
async def test_get_and_list_tasks_work_on_every_replica(replicas: ReplicaSet) -> None:
    created: list[str] = []
    for replica in replicas.replicas:
        async with connect(replica.url, token=ALICE) as client:
            async with asyncio.timeout(TIMEOUT):
                responses = [
                    r async for r in client.send_message(request('stream 2 1'))
                ]
        created.append(responses[0].task.id)
        assert state_of(responses[-1]) == TaskState.TASK_STATE_COMPLETED

    for replica in replicas.replicas:
        async with connect(replica.url, token=ALICE) as client:
            for task_id in created:
                task = await client.get_task(GetTaskRequest(id=task_id))
                assert task.id == task_id
                assert task.status.state == TaskState.TASK_STATE_COMPLETED
            listed = await client.list_tasks(ListTasksRequest())
            assert sorted(t.id for t in listed.tasks) == sorted(created)
            assert listed.total_size == 3
            paged = await client.list_tasks(ListTasksRequest(page_size=2))
            rest = await client.list_tasks(
                ListTasksRequest(page_size=2, page_token=paged.next_page_token)
            )
            assert [t.id for t in paged.tasks] + [t.id for t in rest.tasks] == [
                t.id for t in listed.tasks
            ]


@pytest.mark.asyncio
async def test_push_delivered_exactly_once_per_event(
    replicas: ReplicaSet, webhook
) -> None:
    push = TaskPushNotificationConfig(url=webhook.url, token='secret-token')
    send = request('stream 3 20')
    send.configuration.CopyFrom(
        SendMessageConfiguration(task_push_notification_config=push)
    )
    async with connect(replicas[0].url, token=ALICE) as on_a:
        async with asyncio.timeout(TIMEOUT):
            responses = [r async for r in on_a.send_message(send)]
    task_id = responses[0].task.id
    assert state_of(responses[-1]) == TaskState.TASK_STATE_COMPLETED

    await webhook.wait_for(
        lambda: any(d.state == 'COMPLETED' for d in webhook.for_task(task_id))
    )
    await asyncio.sleep(0.5)  # a window for late duplicates from any replica
    deliveries = webhook.for_task(task_id)
    assert all(d.token == 'secret-token' for d in deliveries)
    steps = [d.step for d in deliveries if d.step is not None]
    assert steps == [1, 2, 3], f'progress pushes were {steps}'
    completed = [d for d in deliveries if d.state == 'COMPLETED']
    assert len(completed) == 1, f'{len(completed)} COMPLETED pushes'
    bodies = [repr(sorted(d.body.items())) for d in deliveries]
    assert len(bodies) == len(set(bodies)), 'the same push was delivered twice'
    assert len([d for d in deliveries if d.kind == 'artifactUpdate']) == 1
