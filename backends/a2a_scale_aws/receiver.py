"""`SqsDoorbellReceiver`: a replica's long-poll loop over its doorbell queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from a2a_scale_aws.errors import error_code

logger = logging.getLogger(__name__)

BATCH = 10
"""Most messages one receive returns, and one delete batch holds (SQS' limit)."""

_DELETE_DELAY_S = 2.0
_RETRY_DELAY_S = 1.0
_LOST_QUEUE_CODES = ('AWS.SimpleQueueService.NonExistentQueue', 'QueueDoesNotExist')


class SqsDoorbellReceiver:
    """Receives a replica's doorbells in batches and deletes them afterwards.

    One long-poll loop hands every received batch to `handle`; the receipt
    handles the handler queues with `delete` are deleted in batches of ten,
    at once when a batch is full and otherwise a little later, so a quiet
    queue costs one delete call per few doorbells rather than one each.
    """

    def __init__(
        self,
        sqs: Any,
        handle: Callable[[list[dict[str, Any]]], None],
        *,
        wait_seconds: int = 20,
        linger: float = 0.05,
    ) -> None:
        """Initializes the receiver.

        Args:
            sqs: The SQS client.
            handle: Called with each received batch of messages.
            wait_seconds: Long-poll wait of each receive (1..20).
            linger: After a partial batch, seconds to let doorbells gather
                before the next receive.
        """
        self.sqs = sqs
        """The SQS client (the backend may set it once its clients are open)."""
        self._handle = handle
        self._wait = wait_seconds
        self._linger = linger
        self.queue_url: str | None = None
        self.stopped = False
        self.queue_lost = False
        """Whether SQS said the queue no longer exists."""
        self._loop: asyncio.Task[None] | None = None
        self._deletes: list[str] = []
        self._delete_flush: asyncio.Task[None] | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    def start(self, queue_url: str) -> None:
        """Starts the receive loop on `queue_url`; idempotent."""
        self.queue_url = queue_url
        self.stopped = False
        self.queue_lost = False
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(
                self._receive_loop(), name='a2a-scale-sqs-receive'
            )

    async def stop(self) -> None:
        """Stops the loop and deletes every doorbell received so far."""
        self.stopped = True
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        flush, self._delete_flush = self._delete_flush, None
        if flush is not None:
            flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flush
        while self._flushing:  # full batches already being deleted
            await asyncio.gather(*self._flushing, return_exceptions=True)
        await self._flush_deletes()

    def delete(self, receipt_handles: list[str]) -> None:
        """Queues received messages for deletion."""
        self._deletes.extend(receipt_handles)
        if len(self._deletes) >= BATCH:
            flushing = asyncio.create_task(self._flush_deletes())
            self._flushing.add(flushing)
            flushing.add_done_callback(self._flushing.discard)
        elif self._deletes and (
            self._delete_flush is None or self._delete_flush.done()
        ):
            self._delete_flush = asyncio.create_task(self._flush_later())

    async def _receive_loop(self) -> None:
        while True:
            try:
                response = await self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=BATCH,
                    WaitTimeSeconds=self._wait,
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                code = error_code(e)
                if code in _LOST_QUEUE_CODES:
                    self.queue_lost = True
                logger.warning(
                    'Receiving doorbells failed (%s); retrying',
                    code or type(e).__name__,
                )
                await asyncio.sleep(_RETRY_DELAY_S)
                continue
            messages = response.get('Messages', [])
            self._handle(messages)
            if 0 < len(messages) < BATCH and self._linger > 0:
                await asyncio.sleep(self._linger)

    async def _flush_later(self) -> None:
        await asyncio.sleep(_DELETE_DELAY_S)
        await self._flush_deletes()

    async def _flush_deletes(self) -> None:
        while self._deletes and self.queue_url is not None:
            handles, self._deletes = self._deletes[:BATCH], self._deletes[BATCH:]
            try:
                await self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {'Id': str(i), 'ReceiptHandle': h}
                        for i, h in enumerate(handles)
                    ],
                )
            except Exception as e:
                logger.debug('Deleting doorbells failed (%s)', error_code(e) or e)
                return
