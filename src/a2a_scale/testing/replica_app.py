"""The server side of a test replica: `a2a_scale.serve` with bearer users.

``python -m a2a_scale.testing.replica_app serve --agent module:factory``
runs one replica on ``127.0.0.1`` with the backend from the ``A2A_SCALE_*``
environment, through `a2a_scale.serve.serve` (probes, drain, graceful
shutdown); `a2a_scale.testing.replicas.ReplicaSet` starts it that way in
subprocess mode. Callers are identified by a bearer token:
``Authorization: Bearer alice`` makes the SDK user ``alice``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from a2a.auth.user import UnauthenticatedUser, User
from a2a.server.routes import DefaultServerCallContextBuilder

from a2a_scale.serve import (
    RPC_PATH,
    AgentFactory,
    EmbeddedServer,
    listening_socket,
    resolve_agent,
    serve,
)
from a2a_scale.serve import build_app as build_server_app
from a2a_scale.serve import embedded_server as _product_server
from a2a_scale.testing.helpers import NamedUser

if TYPE_CHECKING:
    import uvicorn
    from a2a.server.request_handlers import RequestHandler
    from a2a.types.a2a_pb2 import AgentCard
    from starlette.applications import Starlette
    from starlette.requests import Request


READY_PREFIX = 'A2A_SCALE_REPLICA_PORT='


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
    """The app of `a2a_scale.serve.build_app`, with bearer-token users."""
    return build_server_app(handler, agent_card, context_builder=BearerContextBuilder())


def loopback_socket() -> socket.socket:
    """Returns a socket bound to a free port on ``127.0.0.1`` (TCP_NODELAY)."""
    return listening_socket('127.0.0.1', 0)


def embedded_server(app: Starlette) -> uvicorn.Server:
    """A quiet `EmbeddedServer` for `app`, with a short graceful shutdown."""
    return _product_server(app, shutdown_seconds=2)


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
        await _stop_embedded_server(server, serving, sock)


async def _stop_embedded_server(
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
    replica accepts requests, ``A2A_SCALE_REPLICA_PORT=<port>`` is printed
    to stdout. Shutdown is `a2a_scale.serve`'s: drain, hand over, release.
    """
    del name

    def announce(url: str) -> None:
        print(f'{READY_PREFIX}{url.rsplit(":", 1)[1]}', flush=True)

    await serve(
        agent,
        host='127.0.0.1',
        port=port,
        context_builder=BearerContextBuilder(),
        on_ready=announce,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m a2a_scale.testing.replica_app serve ...``."""
    parser = argparse.ArgumentParser(prog='python -m a2a_scale.testing.replica_app')
    commands = parser.add_subparsers(dest='command', required=True)
    command = commands.add_parser('serve', help='run one replica on 127.0.0.1')
    command.add_argument('--agent', required=True, help='module:factory')
    command.add_argument('--name', default='A', help='replica name for logs')
    command.add_argument('--port', type=int, default=0, help='0 picks a free port')
    args = parser.parse_args(argv)
    asyncio.run(serve_replica(args.agent, name=args.name, port=args.port))


__all__ = [
    'READY_PREFIX',
    'RPC_PATH',
    'AgentFactory',
    'BearerContextBuilder',
    'BearerUser',
    'EmbeddedServer',
    'build_app',
    'embedded_server',
    'loopback_socket',
    'resolve_agent',
    'serve_app',
    'serve_replica',
]


if __name__ == '__main__':
    main()
