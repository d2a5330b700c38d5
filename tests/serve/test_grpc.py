"""`serve` with ``grpc_port``: the SDK's gRPC transport, its drain, its extra."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from typing import Any

import grpc
import grpc.aio
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, TaskState
from a2a.utils.constants import TransportProtocol
from e2e_agents import create_agent

from a2a_scale.api import load_backend
from a2a_scale.serve import serve

pytestmark = [pytest.mark.memory]


def free_port() -> int:
    """A free port for the gRPC server (``0`` means no gRPC)."""
    for port in range(7800, 7900):
        with socket.socket() as sock:
            try:
                sock.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise RuntimeError('no free port in 7800-7899')


def request(text: str) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(
            message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text=text)]
        )
    )


def state_of(event: Any) -> int:
    if event.HasField('status_update'):
        return int(event.status_update.status.state)
    return int(event.task.status.state)


@pytest.mark.asyncio
async def test_grpc_answers_streams_and_refuses_new_work_while_draining() -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    backend = load_backend('memory', namespace=f'grpc-{uuid.uuid4().hex[:8]}')
    serving = asyncio.create_task(
        serve(
            create_agent,
            port=0,
            grpc_port=free_port(),
            backend=backend,
            stop=stop,
            on_ready=ready.set_result,
            handle_signals=False,
            drain_seconds=0.5,
        )
    )
    try:
        url = await asyncio.wait_for(asyncio.shield(ready), 20)

        def config(*, streaming: bool) -> ClientConfig:
            return ClientConfig(
                streaming=streaming,
                supported_protocol_bindings=[TransportProtocol.GRPC],
                grpc_channel_factory=grpc.aio.insecure_channel,
            )

        # The card, fetched over HTTP, lists the gRPC interface the client uses.
        unary = await create_client(url, config(streaming=False))
        streaming = await create_client(url, config(streaming=True))
        try:
            answers = [e async for e in unary.send_message(request('stream 1 0'))]
            assert state_of(answers[-1]) == TaskState.TASK_STATE_COMPLETED
            events = [e async for e in streaming.send_message(request('stream 3 0'))]
            assert len(events) >= 4  # the task, 3 updates, the completion
            assert state_of(events[-1]) == TaskState.TASK_STATE_COMPLETED

            # A held task's stream stays open until the replica shuts down.
            held: list[Any] = []

            async def follow() -> None:
                async for event in streaming.send_message(request('hold')):
                    held.append(event)

            following = asyncio.create_task(follow())
            while len(held) < 2:  # noqa: ASYNC110 (a stream of the server)
                await asyncio.sleep(0.02)
            stop.set()
            refused = None
            async with asyncio.timeout(10):
                while refused is None:
                    try:
                        async for _ in unary.send_message(request('stream 1 0')):
                            pass
                    except Exception as e:
                        refused = e
                    await asyncio.sleep(0.01)
            assert 'UNAVAILABLE' in str(refused)
            assert 'draining' in str(refused)
            async with asyncio.timeout(15):  # the held stream ends
                await asyncio.gather(following, return_exceptions=True)
            await asyncio.wait_for(serving, 15)
        finally:
            await unary.close()
            await streaming.close()
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)


def test_grpc_port_without_grpcio_is_one_clear_line() -> None:
    blocked = (
        "import sys; sys.modules['grpc'] = None; "
        'from a2a_scale.cli import main; sys.argv = '
        "['a2a-scale', 'serve', '--agent', 'x:y', '--grpc-port', '1']; main()"
    )
    env = {**os.environ, 'A2A_SCALE_BACKEND': 'memory'}
    done = subprocess.run(
        [sys.executable, '-c', blocked],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert 'pip install "a2a-sdk[grpc]"' in done.stderr
    assert 'A2A_SCALE_GRPC_PORT' in done.stderr
    assert 'Traceback' not in done.stderr
