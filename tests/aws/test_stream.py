import asyncio
import json
import os
import random
from collections.abc import Callable
from typing import Any

import pytest
from a2a.server.cluster import TaskVersion, VersionedEvent
from a2a.types.a2a_pb2 import Artifact, Part, TaskState

from a2a_scale.testing import (
    Subscription,
    TaskWriter,
    agent_message,
    make_task,
    user_context,
)
from a2a_scale_aws.backend import AWSBackend
from a2a_scale_aws.stream import doorbell

pytestmark = pytest.mark.aws

TIMEOUT = 15.0


class ChaosSQS:
    """Reorders, duplicates and delays what SQS delivers to a stream."""

    def __init__(self, real: Any, seed: int) -> None:
        self.real = real
        self.rng = random.Random(seed)
        self.held: list[dict[str, Any]] = []
        self.duplicated = 0
        self.reordered = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        response = await self.real.receive_message(**kwargs)
        pool = self.held + list(response.get('Messages', []))
        extra = [dict(m) for m in pool if self.rng.random() < 0.5]
        self.duplicated += len(extra)
        pool += extra
        before = list(pool)
        self.rng.shuffle(pool)
        self.reordered += pool != before
        keep = self.rng.randint(0, len(pool))
        out, self.held = pool[:keep], pool[keep:]
        # Stale and foreign doorbells, and garbage, ride along.
        out.append({'Body': doorbell('no-such-task', 7)})
        out.append({'Body': 'not json'})
        return {'Messages': out}


@pytest.mark.asyncio
async def test_reordered_and_duplicated_doorbells_keep_order_without_gaps(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    alice = user_context('alice')
    async with make_backend(namespace) as a, make_backend(namespace) as b:
        stream = b.event_stream
        chaos = ChaosSQS(stream._doorbells.sqs, seed=4)
        stream._doorbells.sqs = chaos
        writer = TaskWriter(a.task_store, alice, make_task())
        first = await writer.create()
        subscription = Subscription(stream, writer.task_id, timeout=TIMEOUT)
        try:
            expected = [first]
            for i in range(40):
                expected.append(await writer.add_artifact(f'chunk {i}'))
                if i % 7 == 0:
                    await asyncio.sleep(0)
            marker = await writer.set_state(TaskState.TASK_STATE_COMPLETED)
            expected.append(marker)
            got = await subscription.take(len(expected))
            assert [(e.version, e.event) for e in got] == [
                (e.version, e.event) for e in expected if e is not None
            ]
            assert chaos.duplicated > 0
            assert chaos.reordered > 0
            # Nothing was repeated after the terminal event either.
            late = VersionedEvent(
                event=agent_message('late', task_id=writer.task_id),
                version=TaskVersion(10_000),
            )
            await a.event_stream.publish(writer.task_id, late)
            assert await subscription.next() == late
        finally:
            await subscription.close()


@pytest.mark.asyncio
async def test_notification_is_a_doorbell_without_the_event(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    alice = user_context('alice')
    async with make_backend(namespace) as a:
        clients = a.clients
        assert clients is not None
        queue = await clients.sqs.create_queue(QueueName=f'{namespace}-spy')
        arn = (
            await clients.sqs.get_queue_attributes(
                QueueUrl=queue['QueueUrl'], AttributeNames=['QueueArn']
            )
        )['Attributes']['QueueArn']
        await clients.sns.subscribe(
            TopicArn=a.event_stream.topic_arn,
            Protocol='sqs',
            Endpoint=arn,
            Attributes={'RawMessageDelivery': 'true'},
        )
        writer = TaskWriter(a.task_store, alice, make_task())
        await writer.create()
        big = make_task(writer.task_id)
        big.artifacts.append(
            Artifact(artifact_id='x', parts=[Part(raw=os.urandom(300_000))])
        )
        await writer.write(big, big)  # a 300 KB event: over the SNS limit
        bodies: list[str] = []
        while len(bodies) < 2:
            received = await clients.sqs.receive_message(
                QueueUrl=queue['QueueUrl'], MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            bodies += [m['Body'] for m in received.get('Messages', [])]
        assert sorted(json.loads(b)['v'] for b in bodies) == [1, 2]
        assert all(set(json.loads(b)) == {'t', 'v'} for b in bodies)
        assert max(len(b) for b in bodies) < 200


@pytest.mark.asyncio
async def test_large_event_reaches_another_replica(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    alice = user_context('alice')
    async with make_backend(namespace) as a, make_backend(namespace) as b:
        writer = TaskWriter(a.task_store, alice, make_task())
        await writer.create()
        subscription = Subscription(
            b.event_stream, writer.task_id, after=writer.version, timeout=TIMEOUT
        )
        try:
            big = make_task(writer.task_id)
            payload = os.urandom(300_000)
            big.artifacts.append(Artifact(artifact_id='x', parts=[Part(raw=payload)]))
            await writer.write(big, big)
            got = await subscription.next()
            assert got.event.artifacts[0].parts[0].raw == payload
        finally:
            await subscription.close()


@pytest.mark.asyncio
async def test_missed_doorbell_is_caught_by_resync(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    alice = user_context('alice')
    async with (
        make_backend(namespace, resync_interval=0.5) as a,
        make_backend(namespace, resync_interval=0.5) as b,
    ):
        a.task_store.on_saved = None  # the save succeeds, the doorbell is lost
        writer = TaskWriter(a.task_store, alice, make_task())
        subscription = Subscription(b.event_stream, writer.task_id, timeout=TIMEOUT)
        try:
            created = await writer.create()
            assert created is not None
            assert (await subscription.next()).version == created.version
        finally:
            await subscription.close()
