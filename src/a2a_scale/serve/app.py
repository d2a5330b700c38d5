"""The ASGI app of one replica: A2A routes, agent card, probes, drain gate."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import TYPE_CHECKING

from a2a.server.routes import (
    create_agent_card_routes,
    create_jsonrpc_routes,
    create_rest_routes,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from a2a_scale.serve.probes import Readiness, probe_routes
from a2a_scale.serve.shutdown import DrainGate

if TYPE_CHECKING:
    from a2a.server.request_handlers import RequestHandler
    from a2a.server.routes import ServerCallContextBuilder
    from a2a.types.a2a_pb2 import AgentCard
    from starlette.requests import Request
    from starlette.responses import Response

RPC_PATH = '/'
"""Where JSON-RPC is served; HTTP+JSON routes sit beside it."""
DEFAULT_CARD_MAX_AGE = 300


def card_routes(card: AgentCard, *, max_age: int) -> list[BaseRoute]:
    """The agent card with ``Cache-Control``, ``ETag`` and ``Last-Modified``.

    A request whose ``If-None-Match`` matches the card's ``ETag`` gets 304.
    ``Last-Modified`` is when this replica loaded the card.
    """
    loaded = formatdate(time.time(), usegmt=True)
    routes: list[BaseRoute] = []
    for route in create_agent_card_routes(
        card, cache_control=f'public, max-age={max_age}'
    ):
        endpoint = route.endpoint

        async def with_last_modified(
            request: Request, endpoint: object = endpoint
        ) -> Response:
            response: Response = await endpoint(request)  # type: ignore[operator]
            response.headers['Last-Modified'] = loaded
            return response

        routes.append(Route(route.path, with_last_modified, methods=['GET']))
    return routes


def build_app(
    handler: RequestHandler,
    agent_card: AgentCard,
    *,
    context_builder: ServerCallContextBuilder | None = None,
    readiness: Readiness | None = None,
    card_max_age: int = DEFAULT_CARD_MAX_AGE,
) -> Starlette:
    """Builds the Starlette app of one replica.

    It serves ``/healthz``, ``/readyz``, the agent card, JSON-RPC on ``/``
    and HTTP+JSON (``/message:send``, ``/tasks/{id}``, ...). Every request
    but the probes passes the app's `DrainGate`, ``app.state.drain_gate``;
    ``app.state.readiness`` is what ``/readyz`` reports.

    Args:
        handler: The replica's request handler.
        agent_card: The agent's card.
        context_builder: Builds each call's context (its user); defaults
            to the SDK's `DefaultServerCallContextBuilder`.
        readiness: What ``/readyz`` reports; defaults to ready unless
            draining.
        card_max_age: ``max-age`` of the card's ``Cache-Control``, seconds.
    """
    readiness = readiness or Readiness(None)
    gate = DrainGate()
    app = Starlette(
        routes=[
            *probe_routes(readiness),
            *card_routes(agent_card, max_age=card_max_age),
            *create_jsonrpc_routes(
                handler, rpc_url=RPC_PATH, context_builder=context_builder
            ),
            *create_rest_routes(handler, context_builder=context_builder),
        ],
        middleware=[Middleware(gate.wrap)],
    )
    app.state.readiness = readiness
    app.state.drain_gate = gate
    return app


__all__ = ['DEFAULT_CARD_MAX_AGE', 'RPC_PATH', 'build_app', 'card_routes']
