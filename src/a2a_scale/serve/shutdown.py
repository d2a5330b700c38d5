"""Graceful shutdown of a serving replica.

On SIGTERM (or SIGINT) a replica, in this order:

1. turns ``/readyz`` to 503, so load balancers stop routing to it;
2. refuses new work: a ``SendMessage`` or ``SendStreamingMessage`` (JSON-RPC,
   or ``message:send`` / ``message:stream`` over HTTP+JSON) gets HTTP 503
   with ``Retry-After`` before any work starts, which load balancers and
   clients retry on another replica (over gRPC, ``UNAVAILABLE``); reads,
   cancels and subscriptions are still served;
3. lets the tasks it runs finish for up to ``A2A_SCALE_DRAIN_SECONDS``;
4. hands the rest over at once under ``A2A_SCALE_RECOVERY``;
5. ends every open response, so streaming clients resubscribe elsewhere,
   and stops the gRPC server, if any;
6. stops the backend, which releases this replica's resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from a2a_scale.serve.probes import PROBE_PATHS

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from a2a_scale.handler import ClusterRequestHandler

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
NEW_WORK_METHODS = frozenset(
    {'SendMessage', 'SendStreamingMessage', 'message/send', 'message/stream'}
)
"""JSON-RPC methods that start or continue an agent (A2A 1.0 and 0.3 names)."""
NEW_WORK_SUFFIXES = ('/message:send', '/message:stream', '/v1/message:send')


class DrainGate:
    """ASGI middleware that refuses new work and ends open responses.

    Until `start_draining` it only keeps track of the requests in flight.
    While draining, requests that would start an agent get 503. After
    `close` every request in flight is ended (a streamed response is
    finished where it stands, an unanswered one gets 503) and any new
    request but a probe gets 503.
    """

    def __init__(self, app: ASGIApp | None = None) -> None:
        """Wraps `app`, or the app given later to `wrap`."""
        self.app = app
        self.draining = False
        self.closed = False
        self._open: set[asyncio.Task[None]] = set()

    def wrap(self, app: ASGIApp) -> DrainGate:
        """Wraps `app` (a Starlette middleware factory); returns the gate."""
        self.app = app
        return self

    def start_draining(self) -> None:
        """Refuses new work from now on."""
        self.draining = True

    @property
    def open_requests(self) -> int:
        """How many requests are in flight."""
        return len(self._open)

    async def close(self, *, within: float = 5.0) -> None:
        """Ends every request in flight and refuses all but probes after."""
        self.draining = True
        self.closed = True
        pending = list(self._open)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=within)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serves one request, refusing or tracking it."""
        assert self.app is not None, 'DrainGate.wrap(app) first'
        if scope['type'] != 'http' or scope.get('path') in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        if self.closed:
            await _refuse(send, 'this replica is shutting down')
            return
        if self.draining and scope.get('method') == 'POST':
            body, receive = await _buffer_body(receive)
            if _starts_work(scope.get('path', ''), body):
                await _refuse(send, 'this replica is draining: send new work elsewhere')
                return
        await self._tracked(scope, receive, send)

    async def _tracked(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        progress = _Progress(send)
        task: asyncio.Task[None] = asyncio.ensure_future(
            self.app(scope, receive, progress.send)
        )
        self._open.add(task)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():  # the server cancelled this request, not `close`
                task.cancel()
                raise
        finally:
            self._open.discard(task)
        if task.cancelled():
            await progress.finish()
        elif task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


class _Progress:
    """Remembers how far a response got, to finish it when cut short."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.ended = False

    async def send(self, message: Message) -> None:
        if message['type'] == 'http.response.start':
            self.started = True
        elif message['type'] == 'http.response.body' and not message.get(
            'more_body', False
        ):
            self.ended = True
        await self._send(message)

    async def finish(self) -> None:
        with contextlib.suppress(Exception):  # the client may be gone already
            if not self.started:
                await _refuse(self._send, 'this replica is shutting down')
            elif not self.ended:
                await self._send(
                    {'type': 'http.response.body', 'body': b'', 'more_body': False}
                )


async def _buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    """Reads the request body; returns it and a `receive` that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message['type'] != 'http.request':
            break
        chunks.append(message.get('body', b''))
        if not message.get('more_body', False):
            break
    body = b''.join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {'type': 'http.request', 'body': body, 'more_body': False}
        return await receive()

    return body, replay


def _starts_work(path: str, body: bytes) -> bool:
    if path.endswith(NEW_WORK_SUFFIXES):
        return True
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return False
    calls = payload if isinstance(payload, list) else [payload]
    return any(
        isinstance(call, dict) and call.get('method') in NEW_WORK_METHODS
        for call in calls
    )


async def _refuse(send: Send, reason: str) -> None:
    body = json.dumps({'error': reason}).encode()
    await send(
        {
            'type': 'http.response.start',
            'status': 503,
            'headers': [
                (b'content-type', b'application/json'),
                (b'content-length', str(len(body)).encode()),
                (b'retry-after', str(RETRY_AFTER_SECONDS).encode()),
                (b'connection', b'close'),
            ],
        }
    )
    await send({'type': 'http.response.body', 'body': body, 'more_body': False})


async def drain_tasks(
    handler: ClusterRequestHandler,
    seconds: float,
    *,
    cut_short: asyncio.Event | None = None,
    poll: float = 0.1,
) -> list[str]:
    """Waits up to `seconds` for the tasks `handler` runs, then hands over.

    The hand-over (`ClusterRequestHandler.hand_over`) applies the recovery
    policy at once to the tasks still running, and stops the handler from
    starting any other.

    Args:
        handler: The replica's request handler.
        seconds: How long running tasks get to finish.
        cut_short: When set, stops waiting (a second signal).
        poll: Seconds between checks.

    Returns:
        The ids of the tasks that were still running when handed over.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    if handler.running_task_ids():
        logger.info(
            'Draining: %d running task(s) get up to %g s to finish',
            len(handler.running_task_ids()),
            seconds,
        )
    while handler.running_task_ids() and loop.time() < deadline:
        if cut_short is not None and cut_short.is_set():
            break
        await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))
    left = handler.running_task_ids()
    if left:
        logger.info('Handing over %d task(s) still running', len(left))
    await handler.hand_over()
    return left


__all__ = [
    'NEW_WORK_METHODS',
    'RETRY_AFTER_SECONDS',
    'DrainGate',
    'drain_tasks',
]
