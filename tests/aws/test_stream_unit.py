"""Stream internals that need no AWS service (fake clients)."""

import asyncio
from typing import Any

import pytest
from a2a.server.cluster import TaskVersion

from a2a_scale_aws.stream import SnsSqsEventStream, doorbell, parse_doorbell


class EmptyLog:
    """A DynamoDB client whose event log is always empty."""

    def __init__(self) -> None:
        self.queried = asyncio.Event()

    async def query(self, **kwargs: Any) -> dict[str, Any]:
        del kwargs
        self.queried.set()
        return {'Items': []}


@pytest.mark.asyncio
async def test_cancel_racing_a_wake_up_still_ends_the_subscription() -> None:
    """A cancel that lands as the feed is woken must not be swallowed.

    ``asyncio.wait_for`` on Python 3.11 returns the result of a future that
    completed in the same loop iteration as the cancel, which left the
    generator running forever and hung whoever closed it.
    """
    log = EmptyLog()
    stream = SnsSqsEventStream(log, None, None, table_name='t', resync_interval=30)

    async def drain() -> None:
        async for _ in stream.subscribe('task-1', after=TaskVersion.MISSING):
            pass

    for _ in range(20):
        log.queried.clear()
        task = asyncio.create_task(drain())
        await asyncio.wait_for(log.queried.wait(), 5)
        fetching = stream._feeds['task-1'].fetching
        assert fetching is not None
        await fetching
        for _ in range(5):  # the subscriber goes back to waiting
            await asyncio.sleep(0)
        stream._feeds['task-1'].pulse()  # the wake-up and the cancel land
        task.cancel()  # in the same loop iteration
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        assert stream.subscriber_count() == 0


def test_doorbell_names_only_the_task_and_version() -> None:
    body = doorbell('task-"1"', 7)
    assert parse_doorbell(body) == ('task-"1"', 7)
    for junk in ('', 'null', '[]', '{"t": 1, "v": 2}', '{"t": "a", "v": "2"}'):
        assert parse_doorbell(junk) is None


class SlowDeletes:
    """An SQS client whose batch deletes wait until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.deleted: list[str] = []

    async def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        await self.release.wait()
        self.deleted += [entry['ReceiptHandle'] for entry in kwargs['Entries']]
        return {'Successful': [], 'Failed': []}


@pytest.mark.asyncio
async def test_stop_waits_for_a_batch_delete_already_under_way() -> None:
    """`stop()` returns only once every received doorbell is deleted.

    A full batch is deleted in the background as soon as it is received; a
    stop that did not wait for it left the batch in flight, to come back
    after the visibility timeout.
    """
    sqs = SlowDeletes()
    stream = SnsSqsEventStream(EmptyLog(), None, sqs, table_name='t')
    stream._doorbells.queue_url = 'queue'
    stream.on_messages(
        [
            {'Body': doorbell(f'task-{i}', 1), 'ReceiptHandle': f'h{i}'}
            for i in range(10)
        ]
    )
    await asyncio.sleep(0)  # the background delete starts and waits
    stopping = asyncio.create_task(stream.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()
    sqs.release.set()
    await asyncio.wait_for(stopping, 5)
    assert sorted(sqs.deleted) == sorted(f'h{i}' for i in range(10))
