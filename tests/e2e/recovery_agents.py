"""A long agent for the crash-recovery end-to-end tests.

A new turn reports progress every `TICK` seconds for `DURATION` seconds,
then completes. A resumed turn (`a2a_scale.handler.resume_count` > 0)
reports ``resumed N`` with metadata ``resumes`` and completes at once, so a
test sees the resumption without waiting the whole run again.

Imported by path (``recovery_agents:create_agent``) by subprocess replicas.
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

from a2a_scale.handler import resume_count

DURATION = 20.0
TICK = 0.5


class LongAgent(AgentExecutor):
    def __init__(self, url: str) -> None:
        self.url = url

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or '', context.context_id or ''
        updater = TaskUpdater(event_queue, task_id, context_id)
        if context.current_task is None and context.message is not None:
            await event_queue.enqueue_event(
                new_task(
                    task_id,
                    context_id,
                    TaskState.TASK_STATE_SUBMITTED,
                    history=[context.message],
                )
            )
        resumes = resume_count(context)
        if resumes:
            await self._report(updater, f'resumed {resumes}', resumes=resumes)
            await updater.add_artifact([new_text_part('resumed')], name='result')
            await updater.complete()
            return
        for step in range(1, int(DURATION / TICK) + 1):
            await self._report(updater, f'tick {step}', step=step)
            await asyncio.sleep(TICK)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(
            event_queue, context.task_id or '', context.context_id or ''
        ).cancel()

    async def _report(self, updater: TaskUpdater, text: str, **metadata: int) -> None:
        message = new_text_message(
            text, context_id=updater.context_id, task_id=updater.task_id
        )
        message.metadata.update({**metadata, 'served_by': self.url})
        await updater.update_status(TaskState.TASK_STATE_WORKING, message=message)


def create_agent(url: str) -> tuple[LongAgent, AgentCard]:
    card = AgentCard(
        name='e2e long agent',
        description='Works for 20 seconds; a resumed turn completes at once.',
        version='1.0.0',
        supported_interfaces=[
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=True),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(id='long', name='Long run', description='Works.', tags=['test'])
        ],
    )
    return LongAgent(url), card
