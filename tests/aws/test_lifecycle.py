import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest
from a2a.types.a2a_pb2 import TaskState

from a2a_scale.testing import Subscription, TaskWriter, make_task, user_context
from a2a_scale_aws import items
from a2a_scale_aws.backend import AWSBackend
from a2a_scale_aws.names import TAG_INSTANCE, TAG_NAMESPACE
from a2a_scale_aws.policy import queue_policy

pytestmark = pytest.mark.aws

TIMEOUT = 15.0


async def subscribed_endpoints(backend: AWSBackend) -> list[str]:
    assert backend.clients is not None
    page = await backend.clients.sns.list_subscriptions_by_topic(
        TopicArn=backend.event_stream.topic_arn
    )
    return [s['Endpoint'] for s in page['Subscriptions']]


async def queue_exists(backend: AWSBackend, url: str) -> bool:
    assert backend.clients is not None
    listed = await backend.clients.sqs.list_queues(
        QueueNamePrefix=backend.names.queue_prefix
    )
    return url in listed.get('QueueUrls', [])


@pytest.mark.asyncio
async def test_start_creates_a_tagged_locked_down_subscribed_queue(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    backend = make_backend(namespace)
    async with backend:
        lifecycle = backend.lifecycle
        assert lifecycle.queue_url is not None
        assert lifecycle.queue_arn is not None
        clients = backend.clients
        assert clients is not None
        tags = await clients.sqs.list_queue_tags(QueueUrl=lifecycle.queue_url)
        assert tags['Tags'] == {
            TAG_NAMESPACE: namespace,
            TAG_INSTANCE: backend.instance_id,
        }
        attributes = await clients.sqs.get_queue_attributes(
            QueueUrl=lifecycle.queue_url, AttributeNames=['Policy']
        )
        assert json.loads(attributes['Attributes']['Policy']) == queue_policy(
            queue_arn=lifecycle.queue_arn, topic_arn=backend.event_stream.topic_arn
        )
        subscription = await clients.sns.get_subscription_attributes(
            SubscriptionArn=lifecycle.subscription_arn
        )
        assert subscription['Attributes']['RawMessageDelivery'] == 'true'
        assert await subscribed_endpoints(backend) == [lifecycle.queue_arn]
        url, arn = lifecycle.queue_url, lifecycle.queue_arn
    async with make_backend(namespace) as other:
        assert arn not in await subscribed_endpoints(other)
        assert not await queue_exists(other, url)


@pytest.mark.asyncio
async def test_reaper_unsubscribes_then_deletes_dead_queues(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    async with make_backend(namespace) as live:
        dead = make_backend(namespace)
        await dead.start()
        url, arn = dead.lifecycle.queue_url, dead.lifecycle.queue_arn
        assert url is not None
        await dead.event_stream.stop()  # it dies without tearing down
        assert await live.lifecycle.reap(older_than=60) == []
        assert live.clients is not None
        await live.clients.dynamodb.update_item(
            TableName=live.names.table,
            Key={
                'pk': {'S': items.replica_pk(dead.instance_id)},
                'sk': {'S': items.REPLICA_SK},
            },
            UpdateExpression='SET hb = :old',
            ExpressionAttributeValues={':old': {'N': '1000'}},
        )
        calls: list[str] = []
        for client in (live.clients.sns, live.clients.sqs):
            client.meta.events.register(
                'before-call.*.*',
                lambda model, **_: calls.append(model.name),
            )
        assert await live.lifecycle.reap(older_than=60) == [dead.instance_id]
        assert calls.index('Unsubscribe') < calls.index('DeleteQueue')
        assert arn not in await subscribed_endpoints(live)
        assert not await queue_exists(live, url)
        assert await live.lifecycle.reap(older_than=60) == []
        assert live.lifecycle.queue_arn in await subscribed_endpoints(live)
        await dead._close()


@pytest.mark.asyncio
async def test_reaped_replica_recreates_its_queue(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    alice = user_context('alice')
    async with make_backend(namespace) as a, make_backend(namespace) as b:
        assert b.clients is not None
        old_url = b.lifecycle.queue_url
        await b.clients.sns.unsubscribe(SubscriptionArn=b.lifecycle.subscription_arn)
        await b.clients.sqs.delete_queue(QueueUrl=old_url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not b.event_stream.queue_lost:
            assert loop.time() < deadline, 'the receive loop never noticed'
            await asyncio.sleep(0.1)
        await b.lifecycle.heartbeat()
        assert b.lifecycle.queue_url is not None
        writer = TaskWriter(a.task_store, alice, make_task())
        await writer.create()
        subscription = Subscription(
            b.event_stream, writer.task_id, after=writer.version, timeout=TIMEOUT
        )
        try:
            done = await writer.set_state(TaskState.TASK_STATE_COMPLETED)
            assert done is not None
            assert (await subscription.next()).version == done.version
        finally:
            await subscription.close()


REPLICA = textwrap.dedent(
    """
    import asyncio, sys
    from a2a_scale import ScaleSettings
    from a2a_scale_aws.backend import AWSBackend
    from a2a_scale_aws.settings import AWSSettings

    async def main():
        backend = AWSBackend(
            ScaleSettings(namespace=sys.argv[1], backend='aws'),
            AWSSettings(create_resources=True, receive_wait_seconds=1),
        )
        await backend.start()
        print('ready', backend.instance_id, backend.lifecycle.queue_url, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@pytest.mark.asyncio
@pytest.mark.slow
async def test_sigkilled_replica_is_reaped_and_publishing_keeps_working(
    make_backend: Callable[..., AWSBackend],
    namespace: str,
    aws_env: dict[str, str],
) -> None:
    alice = user_context('alice')
    async with make_backend(namespace) as a, make_backend(namespace) as c:
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, '-c', REPLICA, namespace],
            stdout=subprocess.PIPE,
            env={**os.environ, **aws_env},
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(
                asyncio.to_thread(proc.stdout.readline), timeout=60
            )
            _, instance_id, url = line.decode().split()
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        assert await queue_exists(a, url)
        dead_arn = url.rsplit('/', 1)[-1]
        assert any(e.endswith(dead_arn) for e in await subscribed_endpoints(a))

        writer = TaskWriter(a.task_store, alice, make_task())
        subscription = Subscription(c.event_stream, writer.task_id, timeout=TIMEOUT)
        try:
            created = await writer.create()  # publishing to a dead queue is fine
            assert created is not None
            assert (await subscription.next()).version == created.version

            # 100 s later the live replicas have beaten; the killed one has not.
            def later() -> float:
                return time.time() + 100

            for live in (a, c):
                live.lifecycle._clock = later
                await live.lifecycle.heartbeat()
            assert await c.lifecycle.reap(older_than=50) == [instance_id]
            assert not await queue_exists(a, url)
            assert not any(e.endswith(dead_arn) for e in await subscribed_endpoints(a))
            assert await a.lifecycle.reap(older_than=50) == []

            done = await writer.set_state(TaskState.TASK_STATE_COMPLETED)
            assert done is not None
            assert (await subscription.next()).version == done.version
        finally:
            await subscription.close()
