"""The gRPC transport of a replica, when the SDK's ``[grpc]`` extra is installed.

`serve` imports this module only when a gRPC port is asked for, after
`a2a_scale.serve.server.require_grpc` has checked that grpcio is there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from a2a.server.request_handlers import GrpcHandler
from a2a.types import a2a_pb2_grpc
from a2a.types.a2a_pb2 import AgentCard, AgentInterface
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol

if TYPE_CHECKING:
    from a2a.server.request_handlers import RequestHandler

GRPC_GRACE_SECONDS = 1.0
"""How long gRPC calls still open at the end of the drain get to end."""
DRAINING_MESSAGE = 'this replica is draining: send new work elsewhere'


def with_grpc_interface(card: AgentCard, address: str) -> AgentCard:
    """A copy of `card` that lists the gRPC interface at `address`.

    A card that already lists a gRPC interface is returned as it is.
    """
    if any(
        interface.protocol_binding == TransportProtocol.GRPC
        for interface in card.supported_interfaces
    ):
        return card
    advertised = AgentCard()
    advertised.CopyFrom(card)
    advertised.supported_interfaces.append(
        AgentInterface(
            url=address,
            protocol_binding=TransportProtocol.GRPC,
            protocol_version=PROTOCOL_VERSION_CURRENT,
        )
    )
    return advertised


class DrainingGrpcHandler(GrpcHandler):
    """The SDK's `GrpcHandler`, refusing new work with UNAVAILABLE when draining."""

    def __init__(self, request_handler: RequestHandler) -> None:
        """Serves `request_handler` over gRPC."""
        super().__init__(request_handler)
        self.draining = False

    async def SendMessage(  # noqa: N802 - the gRPC method's name
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        """Sends a message, unless this replica is draining."""
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING_MESSAGE)
        return await super().SendMessage(request, context)

    async def SendStreamingMessage(  # noqa: N802 - the gRPC method's name
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """Streams a message's events, unless this replica is draining."""
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING_MESSAGE)
        async for response in super().SendStreamingMessage(request, context):
            yield response


class GrpcReplica:
    """A ``grpc.aio`` server of one replica's request handler."""

    def __init__(self, host: str, port: int) -> None:
        """Binds ``host:port`` (``0`` picks a free port); `start` serves."""
        self.servicer: DrainingGrpcHandler | None = None
        self.draining = False
        self.server = grpc.aio.server()
        bind_host = f'[{host}]' if ':' in host else host
        try:
            self.port: int = self.server.add_insecure_port(f'{bind_host}:{port}')
        except RuntimeError as e:
            raise OSError(f'cannot listen on {host}:{port} for gRPC: {e}') from None
        local = '127.0.0.1' if host in ('', '0.0.0.0', '::') else bind_host  # noqa: S104
        self.address = f'{local}:{self.port}'
        """Where a local client reaches the server, ``host:port``."""

    async def start(self, handler: RequestHandler) -> None:
        """Starts serving `handler`."""
        self.servicer = DrainingGrpcHandler(handler)
        a2a_pb2_grpc.add_A2AServiceServicer_to_server(self.servicer, self.server)
        await self.server.start()

    def start_draining(self) -> None:
        """Refuses new ``SendMessage`` and ``SendStreamingMessage`` calls."""
        if self.servicer is not None:
            self.servicer.draining = True

    async def close(self, grace: float = GRPC_GRACE_SECONDS) -> None:
        """Refuses every new call; ends the calls still open after `grace`."""
        self.start_draining()
        await self.server.stop(grace)


__all__ = [
    'DrainingGrpcHandler',
    'GrpcReplica',
    'with_grpc_interface',
]
