"""The server side of a replica: the app, its callers, and the process entry.

``python -m a2a_scale.testing.replica_app serve --agent module:factory``
runs one replica on ``127.0.0.1`` with the backend from the ``A2A_SCALE_*``
environment; `a2a_scale.testing.replicas.ReplicaSet` starts it that way in
subprocess mode. Callers are identified by a bearer token:
``Authorization: Bearer alice`` makes the SDK user ``alice``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import socket
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import TYPE_CHECKING

import uvicorn
from a2a.auth.user import UnauthenticatedUser, User
from a2a.server.routes import (
    DefaultServerCallContextBuilder,
    create_agent_card_routes,
    create_jsonrpc_routes,
)
from starlette.applications import Starlette

from a2a_scale.api import load_backend
from a2a_scale.errors import ConfigurationError
from a2a_scale.testing.helpers import NamedUser

if TYPE_CHECKING:
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import RequestHandler
    from a2a.types.a2a_pb2 import AgentCard
    from starlette.requests import Request


AgentFactory = Callable[[str], 'tuple[AgentExecutor, AgentCard]']

READY_PREFIX = 'A2A_SCALE_REPLICA_PORT='
RPC_PATH = '/'


BearerUser = NamedUser
"""A caller identified by the token of an ``Authorization: Bearer`` header."""


class BearerContextBuilder(DefaultServerCallContextBuilder):
    """Sets the call's user from ``Authorization: Bearer <name>``.

    For tests and demos only: the token is trusted as the user name.
    """

    def build_user(self, request: Request) -> User:
        """Returns a `BearerUser`, or an unauthenticated user without token."""
        scheme, _, token = request.headers.get('authorization', '').partition(' ')
        if scheme.lower() == 'bearer' and token.strip():
            return BearerUser(token.strip())
        return UnauthenticatedUser()


def build_app(handler: RequestHandler, agent_card: AgentCard) -> Starlette:
    """Builds the Starlette app of one replica: agent card plus JSON-RPC."""
    return Starlette(
        routes=[
            *create_agent_card_routes(agent_card),
            *create_jsonrpc_routes(
                handler, rpc_url=RPC_PATH, context_builder=BearerContextBuilder()
            ),
        ]
    )


def resolve_agent(path: str) -> AgentFactory:
    """Imports an `AgentFactory` given as ``'module:attribute'``."""
    module_name, _, attr = path.partition(':')
    if not module_name or not attr:
        raise ConfigurationError(f'Agent {path!r} is not of the form module:factory')
    factory: AgentFactory = getattr(importlib.import_module(module_name), attr)
    return factory


def loopback_socket() -> socket.socket:
    """Returns a socket bound to a free port on ``127.0.0.1``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', 0))
    return sock


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host program.

    Stock `uvicorn.Server.serve` re-raises a captured SIGTERM once it has
    stopped, which would kill the process before the backend tears down its
    per-replica resources.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def embedded_server(app: Starlette) -> uvicorn.Server:
    """A quiet `EmbeddedServer` for `app`, with a short graceful shutdown."""
    config = uvicorn.Config(
        app, log_level='warning', lifespan='off', timeout_graceful_shutdown=2
    )
    return EmbeddedServer(config)


@contextlib.asynccontextmanager
async def serve_app(
    app: Starlette, *, sock: socket.socket | None = None
) -> AsyncIterator[str]:
    """Serves `app` on a loopback port in the current loop; yields its URL.

    Args:
        app: The ASGI app (a replica, or a test webhook receiver).
        sock: A bound socket to serve on; defaults to a fresh free port.
    """
    sock = sock or loopback_socket()
    url = f'http://127.0.0.1:{sock.getsockname()[1]}'
    server = embedded_server(app)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name=f'serve-{url}')
    try:
        yield url
    finally:
        await _stopembedded_server(server, serving, sock)


async def _stopembedded_server(
    server: uvicorn.Server, serving: asyncio.Task[None], sock: socket.socket
) -> None:
    server.should_exit = True
    try:
        await asyncio.wait_for(serving, timeout=10)
    except TimeoutError:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    finally:
        sock.close()


async def serve_replica(agent: str, *, name: str, port: int = 0) -> None:
    """Runs one replica until SIGTERM or SIGINT (the subprocess entry point).

    The backend is loaded from the ``A2A_SCALE_*`` environment. Once the
    socket is bound, ``A2A_SCALE_REPLICA_PORT=<port>`` is printed to stdout.
    """
    factory = resolve_agent(agent)
    backend = load_backend()
    async with backend:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(('127.0.0.1', port))
        bound = sock.getsockname()[1]
        executor, card = factory(f'http://127.0.0.1:{bound}')
        handler = backend.request_handler(agent_executor=executor, agent_card=card)
        server = embedded_server(build_app(handler, card))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, setattr, server, 'should_exit', True)
        print(f'{READY_PREFIX}{bound}', flush=True)
        try:
            await server.serve(sockets=[sock])
        finally:
            await handler.aclose()
            sock.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m a2a_scale.testing.replica_app serve ...``."""
    parser = argparse.ArgumentParser(prog='python -m a2a_scale.testing.replica_app')
    commands = parser.add_subparsers(dest='command', required=True)
    serve = commands.add_parser('serve', help='run one replica on 127.0.0.1')
    serve.add_argument('--agent', required=True, help='module:factory')
    serve.add_argument('--name', default='A', help='replica name for logs')
    serve.add_argument('--port', type=int, default=0, help='0 picks a free port')
    args = parser.parse_args(argv)
    asyncio.run(serve_replica(args.agent, name=args.name, port=args.port))


if __name__ == '__main__':
    main()
