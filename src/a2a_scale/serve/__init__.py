"""Serve an agent as one replica: ``a2a-scale serve`` and its Python API.

Example::

    from a2a_scale.serve import run

    def create_agent(url: str) -> tuple[AgentExecutor, AgentCard]:
        return MyAgentExecutor(), build_card(url)

    run(create_agent, host='0.0.0.0', port=8000)
"""

from a2a_scale.serve.app import DEFAULT_CARD_MAX_AGE, RPC_PATH, build_app
from a2a_scale.serve.probes import HEALTHZ_PATH, READYZ_PATH, Readiness
from a2a_scale.serve.server import (
    AgentFactory,
    EmbeddedServer,
    embedded_server,
    listening_socket,
    resolve_agent,
    run,
    serve,
)
from a2a_scale.serve.shutdown import DrainGate, drain_tasks

__all__ = [
    'DEFAULT_CARD_MAX_AGE',
    'HEALTHZ_PATH',
    'READYZ_PATH',
    'RPC_PATH',
    'AgentFactory',
    'DrainGate',
    'EmbeddedServer',
    'Readiness',
    'build_app',
    'drain_tasks',
    'embedded_server',
    'listening_socket',
    'resolve_agent',
    'run',
    'serve',
]
