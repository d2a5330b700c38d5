"""`build_request_handler` / `Backend.request_handler` and handler defaults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryPushNotificationConfigStore, InMemoryTaskStore
from a2a.types.a2a_pb2 import (
    AgentCard,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from handler_support import (
    WAIT,
    Completes,
    InputThenComplete,
    RecordingPushSender,
    agent_card,
    call_context,
    send_request,
    state_of,
    user_message,
)

import a2a_scale
from a2a_scale.handler import (
    DEFAULT_INTERRUPTED_TASK_TIMEOUT,
    ClusterRequestHandler,
)

pytestmark = pytest.mark.memory

COMPLETED = TaskState.TASK_STATE_COMPLETED


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[a2a_scale.Backend]:
    backend = a2a_scale.load_backend('memory', namespace=f'b{uuid.uuid4().hex[:8]}')
    async with backend:
        yield backend


class Webhook:
    """A loopback HTTP endpoint that records the JSON bodies posted to it."""

    def __init__(self) -> None:
        self.bodies: asyncio.Queue[dict] = asyncio.Queue()
        self.url = ''
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Webhook:
        self._server = await asyncio.start_server(self._serve, '127.0.0.1', 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f'http://127.0.0.1:{port}/push'
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # From Python 3.12.1 `wait_closed` also waits for open connections: a
        # client's keep-alive connection left open would hang it.
        for writer in list(self._clients):
            writer.close()
        await self._server.wait_closed()

    async def wait_disconnected(self) -> None:
        """Waits until every client closed its connection."""
        async with asyncio.timeout(WAIT):
            while self._clients:  # noqa: ASYNC110 (no event to wait on)
                await asyncio.sleep(0.01)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._clients.add(writer)
        try:
            await self._exchange(reader, writer)
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                length = 0
                for line in head.decode('latin-1').split('\r\n'):
                    name, _, value = line.partition(':')
                    if name.lower() == 'content-length':
                        length = int(value)
                body = await reader.readexactly(length)
                await self.bodies.put(json.loads(body))
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
                await writer.drain()


def _with_push(url: str) -> SendMessageRequest:
    return SendMessageRequest(
        message=user_message(),
        configuration=SendMessageConfiguration(
            task_push_notification_config=TaskPushNotificationConfig(url=url)
        ),
    )


@pytest.mark.asyncio
async def test_push_capable_card_gets_an_http_push_sender(
    backend: a2a_scale.Backend,
) -> None:
    handler = backend.request_handler(
        agent_executor=Completes(), agent_card=agent_card(push=True)
    )
    assert isinstance(handler, ClusterRequestHandler)
    async with Webhook() as hook:
        done = await asyncio.wait_for(
            handler.on_message_send(_with_push(hook.url), call_context()), WAIT
        )
        assert state_of(done) == COMPLETED
        states = []
        while 'TASK_STATE_COMPLETED' not in states:
            body = await asyncio.wait_for(hook.bodies.get(), WAIT)
            update = body.get('statusUpdate') or body.get('task') or {}
            states.append(update.get('status', {}).get('state'))
        # The handler's close closes the HTTP client it made for pushes.
        await handler.aclose()
        await hook.wait_disconnected()


@pytest.mark.asyncio
async def test_card_without_push_gets_no_push_sender(
    backend: a2a_scale.Backend,
) -> None:
    handler = backend.request_handler(
        agent_executor=Completes(), agent_card=agent_card(push=False)
    )
    assert handler._push_sender is None
    assert handler._owned_http_client is None


@pytest.mark.asyncio
async def test_timeout_defaults_to_setting(backend: a2a_scale.Backend) -> None:
    handler = backend.request_handler(
        agent_executor=Completes(), agent_card=agent_card()
    )
    registry = handler._active_task_registry
    assert registry._interrupted_task_timeout == 30.0
    assert backend.settings.interrupted_task_timeout == 30.0


@pytest.mark.asyncio
async def test_timeout_setting_releases_parked_tasks() -> None:
    backend = a2a_scale.load_backend(
        'memory',
        namespace=f'b{uuid.uuid4().hex[:8]}',
        interrupted_task_timeout=0.05,
    )
    async with backend:
        handler = backend.request_handler(
            agent_executor=InputThenComplete(), agent_card=agent_card()
        )
        task = await asyncio.wait_for(
            handler.on_message_send(send_request(user_message()), call_context()),
            WAIT,
        )
        assert state_of(task) == TaskState.TASK_STATE_INPUT_REQUIRED

        active = await handler._active_task_registry.get(task.id)
        assert active is not None
        await asyncio.wait_for(active._is_finished.wait(), WAIT)
        # Released, not lost: a follow-up on the same replica completes it.
        done = await asyncio.wait_for(
            handler.on_message_send(
                send_request(
                    user_message('more', task_id=task.id, context_id=task.context_id)
                ),
                call_context(),
            ),
            WAIT,
        )
        assert state_of(done) == COMPLETED


def test_handler_default_timeout_vs_sdk() -> None:
    """Built directly, our handler still releases parked tasks; the SDK never."""
    kwargs: dict[str, Any] = {
        'agent_executor': Completes(),
        'task_store': InMemoryTaskStore(),
        'agent_card': agent_card(),
    }
    sdk = DefaultRequestHandler(**kwargs)
    ours = ClusterRequestHandler(**kwargs)
    assert sdk._active_task_registry._interrupted_task_timeout is None
    assert ours._active_task_registry._interrupted_task_timeout == (
        DEFAULT_INTERRUPTED_TASK_TIMEOUT
    )
    assert DEFAULT_INTERRUPTED_TASK_TIMEOUT == 30.0
    explicit = ClusterRequestHandler(**kwargs, interrupted_task_timeout=None)
    assert explicit._active_task_registry._interrupted_task_timeout is None


@pytest.mark.asyncio
async def test_kwargs_pass_through(backend: a2a_scale.Backend) -> None:
    pushes = RecordingPushSender()
    extended = AgentCard(name='extended')
    handler = backend.request_handler(
        agent_executor=Completes(),
        agent_card=agent_card(),
        push_sender=pushes,
        interrupted_task_timeout=5.0,
        extended_agent_card=extended,
    )
    assert handler.extended_agent_card is extended
    assert handler._active_task_registry._interrupted_task_timeout == 5.0
    assert handler._owned_http_client is None
    done = await asyncio.wait_for(
        handler.on_message_send(send_request(user_message()), call_context()), WAIT
    )
    assert pushes.count(done.id, COMPLETED) == 1


@pytest.mark.asyncio
async def test_positional_arguments_are_understood() -> None:
    pushes = RecordingPushSender()
    handler = ClusterRequestHandler(
        Completes(),
        InMemoryTaskStore(),
        agent_card(),
        None,
        InMemoryPushNotificationConfigStore(),
        pushes,
    )
    try:
        done = await asyncio.wait_for(
            handler.on_message_send(send_request(user_message()), call_context()),
            WAIT,
        )
        assert pushes.count(done.id, COMPLETED) == 1
    finally:
        await handler.aclose()


@pytest.mark.asyncio
async def test_backend_stop_closes_handlers() -> None:
    backend = a2a_scale.load_backend('memory', namespace=f'b{uuid.uuid4().hex[:8]}')
    await backend.start()
    handler = backend.request_handler(
        agent_executor=InputThenComplete(), agent_card=agent_card(push=True)
    )
    client = handler._owned_http_client
    assert client is not None
    task = await asyncio.wait_for(
        handler.on_message_send(send_request(user_message()), call_context()), WAIT
    )
    assert state_of(task) == TaskState.TASK_STATE_INPUT_REQUIRED
    await asyncio.wait_for(backend.stop(), WAIT)
    assert client.is_closed
    with pytest.raises(RuntimeError, match='closed'):
        await handler.on_message_send(send_request(user_message()), call_context())
