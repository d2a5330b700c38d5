"""A streaming agent that asks a question: a shop assistant taking an order.

The first message names a product. The agent streams its progress, then
asks for a size (the task moves to input-required); the follow-up, sent to
any replica, completes the order with an artifact. A message ``slow N``
works for N seconds first, streaming one update per second (handy to watch
a rollout drain a running task).

Run it like `minimal_agent`::

    a2a-scale serve --agent streaming_agent:create_agent --app-dir examples
"""

from __future__ import annotations

import asyncio

from a2a.helpers import new_task, new_text_message, new_text_part
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


class OrderAgent(AgentExecutor):
    """Takes an order in two turns, streaming what it does."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Runs one turn: the order's first message, or the size follow-up."""
        task_id, context_id = context.task_id or '', context.context_id or ''
        updater = TaskUpdater(event_queue, task_id, context_id)
        current = context.current_task
        text = context.get_user_input().strip()
        if (
            current is not None
            and current.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        ):
            product = dict(current.metadata).get('product', 'item')
            await self._say(updater, f'Ordering {product} in size {text}')
            await updater.add_artifact(
                [new_text_part(f'Order placed: {product}, size {text}')], name='order'
            )
            await updater.complete()
            return
        if current is None and context.message is not None:
            task = new_task(
                task_id,
                context_id,
                TaskState.TASK_STATE_SUBMITTED,
                history=[context.message],
            )
            task.metadata.update({'product': text})
            await event_queue.enqueue_event(task)
        command, _, rest = text.partition(' ')
        if command == 'slow' and rest.strip().isdigit():
            for second in range(1, int(rest) + 1):
                await self._say(updater, f'working: {second} s')
                await asyncio.sleep(1)
            await updater.add_artifact([new_text_part(f'worked {rest} s')], name='work')
            await updater.complete()
            return
        await self._say(updater, f'Looking up {text}')
        await self._say(updater, f'{text} is in stock')
        await updater.requires_input(
            new_text_message('Which size?', context_id=context_id, task_id=task_id)
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Marks the task canceled."""
        await TaskUpdater(
            event_queue, context.task_id or '', context.context_id or ''
        ).cancel()

    @staticmethod
    async def _say(updater: TaskUpdater, text: str) -> None:
        message = new_text_message(
            text, context_id=updater.context_id, task_id=updater.task_id
        )
        await updater.update_status(TaskState.TASK_STATE_WORKING, message=message)


def create_agent(url: str) -> tuple[AgentExecutor, AgentCard]:
    """The agent factory: ``url`` is where clients reach the replicas."""
    card = AgentCard(
        name='Shop assistant',
        description='Takes an order, asking for the size.',
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
                id='order',
                name='Order',
                description='Orders a product in a size.',
                tags=['example'],
            )
        ],
    )
    return OrderAgent(), card


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
