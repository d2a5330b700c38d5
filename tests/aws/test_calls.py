"""Counts AWS API calls per event (the efficiency target of the issue)."""

import asyncio
from collections.abc import Callable

import pytest
from a2a.server.cluster import VersionedEvent

from a2a_scale.testing import Subscription, TaskWriter, make_task, user_context
from a2a_scale_aws.backend import AWSBackend
from a2a_scale_aws.clients import CallCounter
from a2a_scale_aws.stream import doorbell

pytestmark = pytest.mark.aws

TASKS = 20
EVENTS_PER_TASK = 10


@pytest.mark.asyncio
async def test_api_calls_per_event(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    alice = user_context('alice')
    writer_calls, reader_calls = CallCounter(), CallCounter()
    async with (
        make_backend(namespace, call_counter=writer_calls) as a,
        make_backend(namespace, call_counter=reader_calls) as b,
    ):
        writers = [TaskWriter(a.task_store, alice, make_task()) for _ in range(TASKS)]
        subscriptions = [
            Subscription(b.event_stream, w.task_id, timeout=30) for w in writers
        ]
        writer_calls.reset()
        reader_calls.reset()

        async def drive(writer: TaskWriter) -> None:
            for i in range(EVENTS_PER_TASK):
                event = (
                    await writer.add_artifact(f'chunk {i}')
                    if i
                    else await writer.create()
                )
                assert event is not None
                # The SDK publishes each event after saving it.
                await a.event_stream.publish(
                    writer.task_id, VersionedEvent(event.event, event.version)
                )

        # One receive loop per replica, however many subscriptions it serves.
        receivers = [
            t for t in asyncio.all_tasks() if t.get_name() == 'a2a-scale-sqs-receive'
        ]
        assert len(receivers) == 2
        try:
            await asyncio.wait_for(asyncio.gather(*(drive(w) for w in writers)), 60)
            for subscription in subscriptions:
                got = await subscription.take(EVENTS_PER_TASK)
                assert [int(e.version._value) for e in got] == list(
                    range(1, EVENTS_PER_TASK + 1)
                )
        finally:
            for subscription in subscriptions:
                await subscription.close()
        events = TASKS * EVENTS_PER_TASK
        await b.event_stream.stop()  # flush pending deletes before counting
        await a.event_stream.stop()
        calls = writer_calls.calls
        assert calls['dynamodb.TransactWriteItems'] == events
        assert calls['sns.Publish'] == events
        # publish() after a save costs nothing: no read, no second write.
        assert calls['dynamodb.Query'] == calls['dynamodb.PutItem'] == 0
        sqs_b = (
            reader_calls.calls['sqs.ReceiveMessage']
            + reader_calls.calls['sqs.DeleteMessageBatch']
        )
        sqs_a = calls['sqs.ReceiveMessage'] + calls['sqs.DeleteMessageBatch']
        print(
            f'\n{events} events: writer {dict(writer_calls.calls)}; '
            f'reader {dict(reader_calls.calls)}; '
            f'SQS calls per event per replica: reader {sqs_b / events:.3f}, '
            f'writer {sqs_a / events:.3f}; log reads per event on the reader '
            f'{reader_calls.calls["dynamodb.Query"] / events:.3f}'
        )
        assert sqs_b / events <= 1.0


@pytest.mark.asyncio
async def test_sqs_calls_per_doorbell_under_load(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    """A replica behind on its doorbells: receive and delete go by tens.

    Load is modelled as a backlog (the receive loop is held off while the
    doorbells are published), so the batches are full whatever the speed of
    this machine: the measure does not depend on timing.
    """
    doorbells = 500
    reader_calls = CallCounter()
    async with make_backend(namespace, call_counter=reader_calls) as b:
        clients = b.clients
        assert clients is not None
        stream = b.event_stream
        queue_url = stream.queue_url
        assert queue_url is not None
        await stream.stop()
        for start in range(0, doorbells, 10):
            await clients.sns.publish_batch(
                TopicArn=stream.topic_arn,
                PublishBatchRequestEntries=[
                    {'Id': str(i), 'Message': doorbell(f'task-{start + i}', 1)}
                    for i in range(10)
                ],
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            attributes = await clients.sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=['ApproximateNumberOfMessages']
            )
            if int(attributes['Attributes']['ApproximateNumberOfMessages']) >= (
                doorbells
            ):
                break
            assert loop.time() < deadline, 'SNS did not deliver every doorbell'
            await asyncio.sleep(0.1)

        received = 0
        done = asyncio.Event()
        on_messages = stream.on_messages

        def count(messages: list[dict[str, object]]) -> None:
            nonlocal received
            received += len(messages)
            if received >= doorbells:
                done.set()
            on_messages(messages)

        stream.on_messages = count  # type: ignore[method-assign]
        reader_calls.reset()
        stream.start(queue_url)
        await asyncio.wait_for(done.wait(), 90)
        await stream.stop()  # flushes the last deletes
        calls = reader_calls.calls
        sqs = calls['sqs.ReceiveMessage'] + calls['sqs.DeleteMessageBatch']
        print(
            f'\n{doorbells} doorbells: {dict(calls)}; '
            f'{sqs / doorbells:.3f} SQS calls per event'
        )
        assert received == doorbells
        assert calls['sqs.DeleteMessageBatch'] == doorbells // 10
        # SQS moves at most 10 messages per call: 0.2 is the floor, plus the
        # receive that was in flight when the loop stopped.
        assert sqs / doorbells <= 0.2 + 1 / doorbells
        left = await clients.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                'ApproximateNumberOfMessages',
                'ApproximateNumberOfMessagesNotVisible',
            ],
        )
        assert set(left['Attributes'].values()) == {'0'}  # every one deleted
