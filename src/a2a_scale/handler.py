"""A cluster-ready `DefaultRequestHandler` built on a backend.

TODO(handler helper): the SDK gap fixes (DESIGN.md section 2) go here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import BasePushNotificationSender

if TYPE_CHECKING:
    from a2a.server.agent_execution import AgentExecutor
    from a2a.types.a2a_pb2 import AgentCard

    from a2a_scale.backend import Backend


class ClusterRequestHandler(DefaultRequestHandler):
    """`DefaultRequestHandler` with the fixes cluster mode needs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._owned_http_client: httpx.AsyncClient | None = kwargs.pop(
            '_owned_http_client', None
        )
        super().__init__(*args, **kwargs)

    async def aclose(self) -> None:
        """Drains active tasks and closes the push HTTP client it owns."""
        await super().aclose()
        if self._owned_http_client is not None:
            await self._owned_http_client.aclose()
            self._owned_http_client = None


def build_request_handler(
    backend: Backend,
    *,
    agent_executor: AgentExecutor,
    agent_card: AgentCard,
    **kwargs: Any,
) -> ClusterRequestHandler:
    """Builds a `ClusterRequestHandler` wired to `backend`."""
    kwargs.setdefault(
        'interrupted_task_timeout', backend.settings.interrupted_task_timeout
    )
    kwargs.setdefault('push_config_store', backend.push_config_store)
    if 'push_sender' not in kwargs and agent_card.capabilities.push_notifications:
        client = httpx.AsyncClient(timeout=10.0)
        kwargs['push_sender'] = BasePushNotificationSender(
            client, kwargs['push_config_store']
        )
        kwargs['_owned_http_client'] = client
    return ClusterRequestHandler(
        agent_executor=agent_executor,
        task_store=backend.task_store,
        agent_card=agent_card,
        event_stream=backend.event_stream,
        **kwargs,
    )
