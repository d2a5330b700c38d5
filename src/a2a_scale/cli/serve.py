"""``a2a-scale serve``: serve an agent as one replica of a cluster."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from a2a_scale import telemetry
from a2a_scale.api import load_backend
from a2a_scale.cli.errors import EXIT_CONFIG, fail, unknown_backend
from a2a_scale.errors import BackendNotFoundError, ConfigurationError

LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'
PUBLIC_URL_ENV = 'A2A_SCALE_PUBLIC_URL'
GRPC_PORT_ENV = 'A2A_SCALE_GRPC_PORT'


def serve(
    *,
    agent: Annotated[
        str,
        typer.Option(
            metavar='MODULE:FACTORY',
            help='The agent factory: given the public URL, it returns '
            '(agent_executor, agent_card).',
        ),
    ],
    host: Annotated[
        str,
        typer.Option(
            metavar='HOST', help='Address to listen on; 0.0.0.0 for every interface.'
        ),
    ] = '127.0.0.1',
    port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, metavar='PORT', help='Port to listen on; 0 picks one.'
        ),
    ] = 8000,
    grpc_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            envvar=GRPC_PORT_ENV,
            metavar='PORT',
            help='Port of the gRPC transport (needs a2a-sdk[grpc]); 0 serves no gRPC.',
        ),
    ] = 0,
    public_url: Annotated[
        str | None,
        typer.Option(
            envvar=PUBLIC_URL_ENV,
            metavar='URL',
            help='URL clients reach the agent at (the load balancer), given '
            "to the factory; defaults to this replica's address.",
        ),
    ] = None,
    app_dir: Annotated[
        str,
        typer.Option(metavar='DIR', help='Directory to import the agent from.'),
    ] = '.',
    log_level: Annotated[
        str,
        typer.Option(metavar='LEVEL', help='debug, info, warning or error.'),
    ] = 'info',
) -> None:
    """Serve an agent as one replica, until SIGTERM or SIGINT.

    The backend comes from the A2A_SCALE_* environment. The replica serves
    JSON-RPC on / and HTTP+JSON beside it, the agent card, /healthz and
    /readyz, and gRPC with --grpc-port. On SIGTERM it stops being ready,
    refuses new tasks (503, or UNAVAILABLE over gRPC), gives running tasks
    A2A_SCALE_DRAIN_SECONDS to finish, hands the rest over under
    A2A_SCALE_RECOVERY, ends open streams, releases its resources and
    exits 0.
    """
    from a2a_scale.serve import resolve_agent, run  # noqa: PLC0415
    from a2a_scale.serve.server import require_grpc  # noqa: PLC0415

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        fail(
            f'Unknown --log-level {log_level!r}: use debug, info, warning or error',
            EXIT_CONFIG,
        )
    _configure_logging(level)
    directory = os.path.abspath(app_dir)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    if grpc_port:
        try:
            require_grpc()
        except ConfigurationError as e:
            fail(str(e), EXIT_CONFIG)
    factory = resolve_agent(agent)  # a bad --agent fails here, in one line
    try:
        backend = load_backend()  # no I/O: a bad setting fails here, naming it
    except BackendNotFoundError as e:
        fail(unknown_backend(e, option=None), EXIT_CONFIG)
    run(
        factory,
        host=host,
        port=port,
        grpc_port=grpc_port,
        public_url=public_url,
        backend=backend,
    )


def _configure_logging(level: int) -> None:
    # a2a-scale's and its backends' loggers; JSON lines with
    # A2A_SCALE_LOG_FORMAT=json, with the trace id inside a span.
    try:
        telemetry.configure_logging(level, text_format=LOG_FORMAT, stream=sys.stderr)
    except ConfigurationError as e:
        fail(str(e), EXIT_CONFIG)
    # Replicas race for shared work by design; the SDK logs some races loudly.
    logging.getLogger('a2a').setLevel(max(level, logging.WARNING))


__all__ = ['serve']
