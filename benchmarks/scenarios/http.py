"""HTTP replicas and clients of the e2e scenario, on the SDK's own pieces.

A replica is the SDK's JSON-RPC and agent-card routes on a uvicorn server
bound to a free loopback port; its URL is handed out only once uvicorn
listens. Every caller is the benchmark user, so all replicas agree on the
owner of every task.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING

import httpx
import uvicorn
from a2a.client import Client, ClientConfig, create_client
from a2a.server.routes import (
    DefaultServerCallContextBuilder,
    create_agent_card_routes,
    create_jsonrpc_routes,
)
from starlette.applications import Starlette

from a2a_scale.serve import listening_socket
from benchmarks.workload import BenchUser

if TYPE_CHECKING:
    from a2a.auth.user import User
    from a2a.server.request_handlers import RequestHandler
    from a2a.types.a2a_pb2 import AgentCard
    from starlette.requests import Request

START_TIMEOUT = 30.0


class BenchContextBuilder(DefaultServerCallContextBuilder):
    """Makes every HTTP caller the benchmark user."""

    def build_user(self, request: Request) -> User:
        del request
        return BenchUser()


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the worker process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def build_app(handler: RequestHandler, card: AgentCard) -> Starlette:
    """The agent card and JSON-RPC routes of one replica."""
    return Starlette(
        routes=[
            *create_agent_card_routes(card),
            *create_jsonrpc_routes(
                handler, rpc_url='/', context_builder=BenchContextBuilder()
            ),
        ]
    )


def loopback_socket() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1, as `a2a-scale serve` binds.

    Created with ``IPPROTO_TCP`` so asyncio sets ``TCP_NODELAY`` on accepted
    connections (no 40 ms wait before a stream's first event).
    """
    return listening_socket('127.0.0.1', 0)


@contextlib.asynccontextmanager
async def serve(app: Starlette, sock: socket.socket) -> AsyncIterator[None]:
    """Serves `app` on `sock` until the context exits; enters once listening.

    Raises:
        RuntimeError: If uvicorn stops or does not start in `START_TIMEOUT` s.
    """
    config = uvicorn.Config(
        app, log_level='warning', lifespan='off', timeout_graceful_shutdown=2
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not server.started:
                if task.done():
                    raise RuntimeError(f'uvicorn stopped at start: {task!r}')
                await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sock.close()


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[Client]:
    """An SDK streaming client of the replica at `url`."""
    async with httpx.AsyncClient(timeout=30.0) as http:
        client = await create_client(
            url, client_config=ClientConfig(streaming=True, httpx_client=http)
        )
        try:
            yield client
        finally:
            await client.close()
