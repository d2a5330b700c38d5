"""The aws scenario: API calls per event, by type, against a moto server.

A writer replica and a reader replica (two backend instances, each with its
own SQS queue) on one namespace. The writer saves and publishes events on
several tasks at once, as the SDK does; the reader follows every task and
must see each event once, in order. Only counts are reported: moto's latency
says nothing about AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

from a2a.server.cluster import TaskVersion

from benchmarks.scenarios.checks import SequenceCheck, require_clean, totals
from benchmarks.sizes import Size
from benchmarks.workload import read_stamp

TIMEOUT = 60.0
SQS_DELIVERY = ('ReceiveMessage', 'DeleteMessage', 'DeleteMessageBatch')


def available() -> str | None:
    """Why the aws scenario cannot run here, or `None`."""
    try:
        import moto  # noqa: F401

        from a2a_scale_aws.backend import AWSBackend  # noqa: F401
        from a2a_scale_aws.clients import CallCounter  # noqa: F401
        from a2a_scale_aws.testing import MotoServer  # noqa: F401
    except ImportError as e:
        return f'the aws backend or moto is not importable: {e}'
    return None


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def run_aws(size: Size) -> dict[str, Any]:
    """Counts API calls per event for the writer and the reader replica."""
    from a2a_scale import ScaleSettings
    from a2a_scale_aws.backend import AWSBackend
    from a2a_scale_aws.clients import CallCounter
    from a2a_scale_aws.settings import AWSSettings
    from a2a_scale_aws.testing import FAKE_CREDENTIALS, MotoServer
    from benchmarks.adapters.scale import ScaleTarget
    from benchmarks.scenarios.writer import Writer

    namespace = f'b{uuid.uuid4().hex[:10]}'
    tasks = [f'aws-{i}' for i in range(size.aws_tasks)]
    per_task = size.aws_events_per_task
    counters = {'writer': CallCounter(), 'reader': CallCounter()}
    with MotoServer() as server, _environment(dict(FAKE_CREDENTIALS)):

        def backend(role: str) -> AWSBackend:
            return AWSBackend(
                ScaleSettings(namespace=namespace, backend='aws'),
                AWSSettings(
                    endpoint_url=server.endpoint,
                    create_resources=True,
                    receive_wait_seconds=1,
                ),
                call_counter=counters[role],
            )

        async with backend('writer') as a, backend('reader') as b:
            writer = Writer(ScaleTarget.around(a, 'aws'), concurrency=len(tasks))
            await writer.each(tasks, 'warm', 0)
            checks = [SequenceCheck('load', per_task) for _ in tasks]

            async def follow(task_id: str, check: SequenceCheck) -> None:
                async for event in b.event_stream.subscribe(
                    task_id, after=TaskVersion.MISSING
                ):
                    check.record(event.version, read_stamp(event.event), time.time_ns())
                    if check.complete:
                        return

            readers = [
                asyncio.create_task(follow(t, c))
                for t, c in zip(tasks, checks, strict=True)
            ]
            await asyncio.sleep(1.0)  # let the reader's subscriptions settle
            for counter in counters.values():
                counter.reset()
            started = time.perf_counter()
            await writer.burst(tasks, 'load', per_task)
            write_seconds = time.perf_counter() - started
            try:
                await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT)
            except TimeoutError:
                pass
            finally:
                for task in readers:
                    task.cancel()
            await b.event_stream.stop()  # flush pending deletes before counting
            await a.event_stream.stop()
            # Counted before the backends tear their queues down.
            calls = {role: dict(c.calls) for role, c in counters.items()}
    events = len(tasks) * per_task
    counts = totals(checks)
    require_clean('aws/calls', counts)
    per_event = {
        role: {name: n / events for name, n in sorted(made.items())}
        for role, made in calls.items()
    }
    sqs = {
        role: sum(made.get(f'sqs.{op}', 0) for op in SQS_DELIVERY) / events
        for role, made in calls.items()
    }
    sent, read = calls['writer'], calls['reader']
    return {
        'case': f'{len(tasks)} tasks x {per_task} events',
        'events': events,
        'calls': calls,
        'per_event': per_event,
        'metrics': {
            'dynamodb_transactions_per_event': (
                sent.get('dynamodb.TransactWriteItems', 0) / events
            ),
            'sns_publish_per_event': sent.get('sns.Publish', 0) / events,
            'sqs_per_event_writer': sqs['writer'],
            'sqs_per_event_reader': sqs['reader'],
            'sqs_per_event_per_replica': max(sqs.values()),
            # Context only: moto's speed bounds how fast doorbells arrive.
            'events_per_s': events / write_seconds,
            'dynamodb_reads_per_event_reader': (
                read.get('dynamodb.Query', 0) + read.get('dynamodb.GetItem', 0)
            )
            / events,
        },
        'checks': counts,
    }
