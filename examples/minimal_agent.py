"""A minimal agent served by a2a-scale: it greets whoever writes to it.

Run one replica on the memory backend::

    a2a-scale serve --agent minimal_agent:create_agent --app-dir examples

or several on Redis, each in its own terminal on its own port::

    export A2A_SCALE_BACKEND=redis A2A_SCALE_REDIS_URL=redis://127.0.0.1:6379/0
    a2a-scale serve --agent minimal_agent:create_agent --app-dir examples --port 8001

``python examples/minimal_agent.py`` does the same through the Python API.
"""

from __future__ import annotations

from a2a.helpers import new_task, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    TaskState,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol


class GreetingAgent(AgentExecutor):
    """Answers every message with one artifact: ``Hello, <message>!``."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Creates the task, adds the greeting, completes."""
        task_id, context_id = context.task_id or '', context.context_id or ''
        if context.current_task is None and context.message is not None:
            await event_queue.enqueue_event(
                new_task(
                    task_id,
                    context_id,
                    TaskState.TASK_STATE_SUBMITTED,
                    history=[context.message],
                )
            )
        updater = TaskUpdater(event_queue, task_id, context_id)
        name = context.get_user_input().strip() or 'world'
        await updater.add_artifact([new_text_part(f'Hello, {name}!')], name='greeting')
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Marks the task canceled."""
        await TaskUpdater(
            event_queue, context.task_id or '', context.context_id or ''
        ).cancel()


def create_agent(url: str) -> tuple[AgentExecutor, AgentCard]:
    """The agent factory: ``url`` is where clients reach the replicas."""
    card = AgentCard(
        name='Greeter',
        description='Greets whoever writes to it.',
        version='1.0.0',
        supported_interfaces=[
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            ),
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.HTTP_JSON,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            ),
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(
                id='greet',
                name='Greet',
                description='Says hello.',
                tags=['example'],
            )
        ],
    )
    return GreetingAgent(), card


if __name__ == '__main__':
    import logging
    import os

    from a2a_scale.serve import run

    logging.basicConfig(level=logging.INFO)
    # Serves until SIGTERM or SIGINT, then drains, hands over what still
    # runs, ends open streams, releases this replica's resources, returns.
    run(
        create_agent,
        host=os.environ.get('HOST', '127.0.0.1'),
        port=int(os.environ.get('PORT', '8000')),
    )
