"""`serve`: run one replica of an agent until SIGTERM, then shut down cleanly.

``a2a-scale serve --agent MODULE:FACTORY`` and `serve` (or `run`) in Python
do the same: load the backend from the ``A2A_SCALE_*`` environment, bind
the port, ask the factory for ``(executor, card)`` given the replica's
public URL, serve the app of `a2a_scale.serve.app.build_app`, and on
SIGTERM or SIGINT follow the steps of `a2a_scale.serve.shutdown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import signal
import socket
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

import uvicorn

from a2a_scale.api import load_backend
from a2a_scale.errors import ConfigurationError
from a2a_scale.serve.app import DEFAULT_CARD_MAX_AGE, build_app
from a2a_scale.serve.probes import Readiness
from a2a_scale.serve.shutdown import drain_tasks

if TYPE_CHECKING:
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.routes import ServerCallContextBuilder
    from a2a.types.a2a_pb2 import AgentCard
    from starlette.applications import Starlette

    from a2a_scale.backend import Backend
    from a2a_scale.serve.grpc_server import GrpcReplica

logger = logging.getLogger('a2a_scale.serve')

AgentFactory = Callable[[str], 'tuple[AgentExecutor, AgentCard]']
"""Given the replica's public URL, returns ``(agent_executor, agent_card)``."""

SERVER_SHUTDOWN_SECONDS = 3.0
"""How long uvicorn waits for connections once every response has ended."""
GRPC_PORT_ENV = 'A2A_SCALE_GRPC_PORT'
GRPC_INSTALL_HINT = 'pip install "a2a-sdk[grpc]"'


def require_grpc() -> None:
    """Raises `ConfigurationError` unless grpcio (the SDK's gRPC extra) is there."""
    if importlib.util.find_spec('grpc') is None:
        raise ConfigurationError(
            f'A gRPC port (--grpc-port, {GRPC_PORT_ENV}) needs grpcio: '
            f'{GRPC_INSTALL_HINT}'
        )


def resolve_agent(path: str) -> AgentFactory:
    """Imports an `AgentFactory` given as ``'module:attribute'``.

    Raises:
        ConfigurationError: If `path` is malformed or cannot be imported.
    """
    module_name, _, attr = path.partition(':')
    if not module_name or not attr:
        raise ConfigurationError(f'Agent {path!r} is not of the form module:factory')
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigurationError(
            f'Agent {path!r}: cannot import module {module_name!r} ({e})'
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigurationError(
            f'Agent {path!r}: module {module_name!r} has no callable {attr!r}'
        )
    return factory


def listening_socket(host: str = '127.0.0.1', port: int = 0) -> socket.socket:
    """Returns a TCP socket bound to ``host:port`` (``0`` picks a free port).

    The socket is created with ``IPPROTO_TCP``, which is what makes asyncio
    set ``TCP_NODELAY`` on every accepted connection: without it a streamed
    response waits about 40 ms (Nagle plus delayed ACK) before its first
    event.
    """
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(
            e.errno, f'cannot listen on {host}:{port}: {e.strerror}'
        ) from None
    except BaseException:
        sock.close()
        raise
    return sock


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host program.

    Stock `uvicorn.Server.serve` captures SIGTERM and re-raises it once it
    has stopped, which kills the process before the backend releases its
    per-replica resources.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:  # noqa: D102
        yield


def embedded_server(
    app: Starlette, *, shutdown_seconds: float = SERVER_SHUTDOWN_SECONDS
) -> EmbeddedServer:
    """A quiet `EmbeddedServer` for `app` (no access log, no lifespan)."""
    config = uvicorn.Config(
        app,
        log_level='warning',
        access_log=False,
        lifespan='off',
        timeout_graceful_shutdown=max(1, round(shutdown_seconds)),
    )
    return EmbeddedServer(config)


def public_url_of(sock: socket.socket, host: str) -> str:
    """The URL a local client reaches `sock` at."""
    port = sock.getsockname()[1]
    if host in ('', '0.0.0.0', '::'):  # noqa: S104 - naming the wildcard
        host = '127.0.0.1'
    elif ':' in host:
        host = f'[{host}]'
    return f'http://{host}:{port}'


async def serve(
    agent: AgentFactory | str,
    *,
    host: str = '127.0.0.1',
    port: int = 8000,
    grpc_port: int = 0,
    public_url: str | None = None,
    backend: Backend | None = None,
    context_builder: ServerCallContextBuilder | None = None,
    handler_kwargs: Mapping[str, Any] | None = None,
    drain_seconds: float | None = None,
    card_max_age: int = DEFAULT_CARD_MAX_AGE,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
    handle_signals: bool = True,
) -> None:
    """Serves one replica of `agent` until SIGTERM or SIGINT (or `stop`).

    Returns once the replica has drained, handed over what still ran, ended
    its open streams and stopped its backend, so a process that returns
    from here exits 0.

    Args:
        agent: The agent factory, or its ``'module:factory'`` path.
        host: The address to listen on (``0.0.0.0`` for every interface).
        port: The port; ``0`` picks a free one.
        grpc_port: The port of the SDK's gRPC transport, on `host`; ``0``
            serves no gRPC. It needs grpcio (``a2a-sdk[grpc]``).
        public_url: The URL clients reach the agent at (behind a load
            balancer, its URL), passed to the factory; defaults to this
            replica's own address.
        backend: A backend not yet started; defaults to
            ``load_backend()`` (the ``A2A_SCALE_*`` environment).
        context_builder: Builds each call's context, its user included;
            defaults to the SDK's `DefaultServerCallContextBuilder`.
        handler_kwargs: Extra arguments for ``backend.request_handler``.
        drain_seconds: How long running tasks get after SIGTERM; defaults
            to ``A2A_SCALE_DRAIN_SECONDS``.
        card_max_age: ``max-age`` of the agent card's ``Cache-Control``.
        stop: Starts the shutdown when set, as a signal does.
        on_ready: Called with the replica's URL once it accepts requests.
        handle_signals: Whether SIGTERM and SIGINT start the shutdown (a
            second one cuts the drain short).
    """
    factory = resolve_agent(agent) if isinstance(agent, str) else agent
    if grpc_port:
        require_grpc()
    backend = backend or load_backend()
    stop = stop or asyncio.Event()
    cut_short = asyncio.Event()
    sock = listening_socket(host, port)
    url = public_url_of(sock, host)
    try:
        # Signals are handled until the backend has stopped: a second one
        # during the drain cuts it short, and none kills the process early.
        with _signals(stop, cut_short, enabled=handle_signals):
            async with backend:
                executor, card = factory(public_url or url)
                grpc_replica = None
                if grpc_port:
                    from a2a_scale.serve.grpc_server import (  # noqa: PLC0415
                        GrpcReplica,
                        with_grpc_interface,
                    )

                    grpc_replica = GrpcReplica(host, grpc_port)
                    card = with_grpc_interface(card, grpc_replica.address)
                handler = backend.request_handler(
                    agent_executor=executor,
                    agent_card=card,
                    **dict(handler_kwargs or {}),
                )
                app = build_app(
                    handler,
                    card,
                    context_builder=context_builder,
                    readiness=Readiness(backend),
                    card_max_age=card_max_age,
                )
                if grpc_replica is not None:
                    await grpc_replica.start(handler)
                server = embedded_server(app)
                serving = asyncio.create_task(
                    server.serve(sockets=[sock]), name=f'a2a-scale-serve-{url}'
                )
                await _until_started(server, serving)
                _log_start(backend, url)
                if on_ready is not None:
                    on_ready(url)
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait(
                    {serving, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                stopping.cancel()
                if serving.done():  # uvicorn stopped on its own: report why
                    if grpc_replica is not None:
                        await grpc_replica.close(grace=0)
                    serving.result()
                    return
                limit = (
                    backend.settings.drain_seconds
                    if drain_seconds is None
                    else drain_seconds
                )
                try:
                    await _shut_down(app, handler, limit, cut_short, grpc_replica)
                finally:
                    server.should_exit = True
                    await _finish(serving)
                    if grpc_replica is not None:
                        await grpc_replica.close(grace=0)
    finally:
        sock.close()
    logger.info('Stopped; this replica released its resources')


async def _shut_down(
    app: Starlette,
    handler: Any,
    drain_seconds: float,
    cut_short: asyncio.Event,
    grpc_replica: GrpcReplica | None,
) -> None:
    logger.info('Shutting down: not ready, refusing new tasks')
    app.state.readiness.start_draining()
    gate = app.state.drain_gate
    gate.start_draining()
    if grpc_replica is not None:
        grpc_replica.start_draining()
    try:
        await drain_tasks(handler, drain_seconds, cut_short=cut_short)
    finally:
        try:
            await gate.close()
        finally:
            if grpc_replica is not None:
                await grpc_replica.close()


async def _until_started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    while not server.started:
        if serving.done():
            serving.result()
            raise RuntimeError('the HTTP server stopped while starting')
        await asyncio.sleep(0.01)


async def _finish(serving: asyncio.Task[None]) -> None:
    try:
        await asyncio.wait_for(serving, timeout=SERVER_SHUTDOWN_SECONDS + 5)
    except TimeoutError:
        logger.warning('The HTTP server did not stop in time; cancelling it')
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


@contextlib.contextmanager
def _signals(
    stop: asyncio.Event, cut_short: asyncio.Event, *, enabled: bool
) -> Generator[None, None, None]:
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.info('%s again: cutting the drain short', name)
            cut_short.set()
        else:
            logger.info('%s received', name)
            stop.set()

    signums = (signal.SIGTERM, signal.SIGINT)
    for signum in signums:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in signums:
            loop.remove_signal_handler(signum)


def _log_start(backend: Backend, url: str) -> None:
    where = f' at {backend.address}' if backend.address else ''
    logger.info(
        'a2a-scale serving %s: backend %s%s, namespace %s, instance %s',
        url,
        backend.name,
        where,
        backend.settings.namespace,
        backend.instance_id,
    )
    if backend.name == 'memory':
        logger.warning(
            'The memory backend keeps tasks in this process: they are not '
            'shared with other processes, so run one replica only or pick a '
            'shared backend (A2A_SCALE_BACKEND)'
        )


def run(agent: AgentFactory | str, **kwargs: Any) -> None:
    """Runs `serve` in a new event loop; takes the same arguments."""
    asyncio.run(serve(agent, **kwargs))


__all__ = [
    'GRPC_INSTALL_HINT',
    'GRPC_PORT_ENV',
    'AgentFactory',
    'EmbeddedServer',
    'embedded_server',
    'listening_socket',
    'public_url_of',
    'require_grpc',
    'resolve_agent',
    'run',
    'serve',
]
