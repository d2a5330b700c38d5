"""The replica app and `serve` in process, on the memory backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from a2a.utils.constants import (
    AGENT_CARD_WELL_KNOWN_PATH,
    PROTOCOL_VERSION_CURRENT,
    VERSION_HEADER,
)
from e2e_agents import create_agent

from a2a_scale.api import load_backend
from a2a_scale.health import ComponentHealth
from a2a_scale.serve import (
    Readiness,
    build_app,
    embedded_server,
    listening_socket,
    serve,
)

pytestmark = [pytest.mark.memory, pytest.mark.asyncio]

HEADERS = {VERSION_HEADER: PROTOCOL_VERSION_CURRENT}


def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {'jsonrpc': '2.0', 'id': 1, 'method': method, 'params': params}


def send_params(text: str) -> dict[str, Any]:
    message = {
        'messageId': uuid.uuid4().hex,
        'role': 'ROLE_USER',
        'parts': [{'text': text}],
    }
    return {'message': message}


@contextlib.asynccontextmanager
async def replica(
    recovery: str = 'fail', namespace: str = '', **kwargs: Any
) -> AsyncIterator[tuple[str, asyncio.Event, Any]]:
    """Runs `serve` in this loop; yields its URL, its stop event and task."""
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    backend = load_backend(
        'memory',
        namespace=namespace or f'serve-{uuid.uuid4().hex[:8]}',
        recovery=recovery,
    )
    serving = asyncio.create_task(
        serve(
            create_agent,
            port=0,
            backend=backend,
            stop=stop,
            on_ready=ready.set_result,
            handle_signals=False,
            **kwargs,
        )
    )
    try:
        async with asyncio.timeout(20):
            url = await asyncio.wait_for(asyncio.shield(ready), 20)
        yield url, stop, serving
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)


async def test_probes_card_and_both_transports() -> None:
    async with replica() as (url, _, _), httpx.AsyncClient(headers=HEADERS) as http:
        assert (await http.get(f'{url}/healthz')).status_code == 200
        assert (await http.get(f'{url}/readyz')).json() == {'status': 'ready'}
        card = await http.get(url + AGENT_CARD_WELL_KNOWN_PATH)
        assert card.status_code == 200
        assert 'max-age=' in card.headers['cache-control']
        assert card.headers['last-modified'].endswith('GMT')
        etag = card.headers['etag']
        again = await http.get(
            url + AGENT_CARD_WELL_KNOWN_PATH, headers={'If-None-Match': etag}
        )
        assert again.status_code == 304
        by_rpc = await http.post(
            url, json=rpc('SendMessage', send_params('stream 1 0'))
        )
        assert (
            by_rpc.json()['result']['task']['status']['state'] == 'TASK_STATE_COMPLETED'
        )
        by_rest = await http.post(f'{url}/message:send', json=send_params('stream 1 0'))
        assert by_rest.status_code == 200, by_rest.text
        assert by_rest.json()['task']['status']['state'] == 'TASK_STATE_COMPLETED'


class _FlakyBackend:
    """Stands in for a backend whose health fails, counting the checks."""

    name = 'fake'
    started = True

    def __init__(self) -> None:
        self.checks = 0
        self.ok = True

    async def health(self) -> list[ComponentHealth]:
        self.checks += 1
        if not self.ok:
            raise ConnectionError('refused')
        return [ComponentHealth('store', True)]


async def test_readiness_follows_backend_health_and_caches_it() -> None:
    backend = _FlakyBackend()
    readiness = Readiness(backend, ttl=60)  # type: ignore[arg-type]
    assert await readiness.check() == (True, 'ok')
    await asyncio.gather(*(readiness.check() for _ in range(20)))
    assert backend.checks == 1  # probes within the period share one check
    backend.ok = False
    readiness.ttl = 0
    ready, reason = await readiness.check()
    assert not ready
    assert 'fake backend failed: ConnectionError' in reason
    readiness.start_draining()
    assert await readiness.check() == (False, 'draining')


async def test_accepted_connections_have_tcp_nodelay() -> None:
    backend = load_backend('memory', namespace=f'serve-{uuid.uuid4().hex[:8]}')
    async with backend:
        executor, card = create_agent('http://127.0.0.1')
        handler = backend.request_handler(agent_executor=executor, agent_card=card)
        sock = listening_socket('127.0.0.1', 0)
        server = embedded_server(build_app(handler, card))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
                await asyncio.sleep(0.01)
            url = f'http://127.0.0.1:{sock.getsockname()[1]}'
            async with httpx.AsyncClient() as http:
                assert (await http.get(f'{url}/healthz')).status_code == 200
                flags = [
                    conn.transport.get_extra_info('socket').getsockopt(
                        socket.IPPROTO_TCP, socket.TCP_NODELAY
                    )
                    for conn in server.server_state.connections
                ]
            assert flags
            assert all(flags), flags
        finally:
            server.should_exit = True
            await serving
            sock.close()


async def test_a_socket_without_ipproto_tcp_gets_no_nodelay_from_asyncio() -> None:
    """The defect `listening_socket` fixes: asyncio checks the socket's proto."""
    seen: list[int] = []

    async def accept(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        del reader
        sock = writer.get_extra_info('socket')
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(('127.0.0.1', 0))
    for sock in (plain, listening_socket('127.0.0.1', 0)):
        server = await asyncio.start_server(accept, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname())
            while len(seen) < (1 if sock is plain else 2):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            writer.close()
    assert seen[0] == 0
    assert seen[1] != 0


@pytest.mark.parametrize('recovery', ['fail', 'resume'])
async def test_shutdown_drains_refuses_new_work_and_ends_streams(
    recovery: str,
) -> None:
    async with (
        replica(recovery, drain_seconds=0.5) as (url, stop, serving),
        httpx.AsyncClient(headers=HEADERS, timeout=20) as http,
    ):
        # A long-running task, streamed: its stream stays open.
        events: list[dict[str, Any]] = []
        stream_ended = asyncio.Event()

        async def follow() -> None:
            body = rpc('SendStreamingMessage', send_params('hold'))
            async with http.stream('POST', url, json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith('data:'):
                        events.append(json.loads(line[5:])['result'])
            stream_ended.set()

        following = asyncio.create_task(follow())
        while len(events) < 2:  # noqa: ASYNC110 (a stream of the server)
            await asyncio.sleep(0.02)
        task_id = events[0]['task']['id']
        stop.set()
        while (await http.get(f'{url}/readyz')).status_code == 200:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        refused = await http.post(
            url, json=rpc('SendMessage', send_params('stream 1 0'))
        )
        assert refused.status_code == 503
        assert refused.headers['retry-after'] == '1'
        refused = await http.post(f'{url}/message:send', json=send_params('x'))
        assert refused.status_code == 503
        read = await http.post(url, json=rpc('GetTask', {'id': task_id}))
        assert read.status_code == 200, read.text
        async with asyncio.timeout(15):
            await stream_ended.wait()
            await following
        await asyncio.wait_for(serving, 15)
        last = events[-1]
        state = (last.get('statusUpdate') or last.get('task'))['status']['state']
        if recovery == 'fail':  # handed over: FAILED, seen by the stream
            assert state == 'TASK_STATE_FAILED'
        else:  # left for a live replica to resume: the stream just ends
            assert state == 'TASK_STATE_WORKING'


async def test_shutdown_ends_a_subscription_to_a_task_running_elsewhere() -> None:
    """B stops while its client follows a task A runs: B's stream must end."""
    namespace = f'serve-{uuid.uuid4().hex[:8]}'
    async with (
        replica(namespace=namespace) as (url_a, _, _),
        replica(namespace=namespace, drain_seconds=0) as (url_b, stop_b, serving_b),
        httpx.AsyncClient(headers=HEADERS, timeout=20) as http,
    ):
        params = {**send_params('hold'), 'configuration': {'returnImmediately': True}}
        started = await http.post(url_a, json=rpc('SendMessage', params))
        task_id = started.json()['result']['task']['id']
        seen = 0
        subscribed = asyncio.Event()

        async def follow_on_b() -> None:
            nonlocal seen
            body = rpc('SubscribeToTask', {'id': task_id})
            async with http.stream('POST', url_b, json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith('data:'):
                        seen += 1
                        subscribed.set()

        following = asyncio.create_task(follow_on_b())
        async with asyncio.timeout(15):
            await subscribed.wait()
            stop_b.set()
            await following  # ends cleanly, long before the task does
            await serving_b
        assert seen >= 1
        still = await http.post(url_a, json=rpc('GetTask', {'id': task_id}))
        assert still.json()['result']['status']['state'] == 'TASK_STATE_WORKING'
        await http.post(url_a, json=rpc('CancelTask', {'id': task_id}))


async def test_the_demo_and_e2e_replica_sockets_get_tcp_nodelay_too() -> None:
    from a2a_scale.testing.replica_app import loopback_socket

    with loopback_socket() as sock:
        assert sock.proto == socket.IPPROTO_TCP
