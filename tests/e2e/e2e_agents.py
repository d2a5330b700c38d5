"""A scripted agent for the multi-replica end-to-end tests.

The first word of the user's message picks the script:

- ``stream N DELAY_MS``: N progress updates (metadata ``step`` 1..N), an
  artifact, then COMPLETED.
- ``hold``: a progress update every 50 ms until cancelled (gives up after
  30 s). When cancelled it writes ``<task id>.cancelled`` into the directory
  named by ``A2A_SCALE_E2E_PROBE_DIR``, so a test in another process can see
  that the agent itself observed the cancel.
- ``idle``: one progress update, then waits without writing anything (an
  agent awaiting a slow model or an outside event); on cancel it writes the
  same probe file as ``hold``.
- ``ask``: one progress update, then INPUT_REQUIRED. The follow-up message
  completes the task with an artifact echoing it.
- ``chat``: like ``ask``, but every follow-up gets one progress update
  (metadata ``shown``: how many messages the task's history held when the
  turn started) and INPUT_REQUIRED again; the task never ends.
- ``big BYTES``: one progress update, then an artifact of BYTES random
  (incompressible) bytes, then COMPLETED.

Imported by path (``e2e_agents:create_agent``) so subprocess replicas can
load it too.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pathlib

from a2a.helpers import new_task, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Task,
    TaskState,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol

PROBE_ENV = 'A2A_SCALE_E2E_PROBE_DIR'
HOLD_TICK = 0.05
HOLD_LIMIT = 600


class ScriptedAgent(AgentExecutor):
    def __init__(self, url: str) -> None:
        self.url = url

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or '', context.context_id or ''
        updater = TaskUpdater(event_queue, task_id, context_id)
        current = context.current_task
        if (
            current is not None
            and current.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        ):
            answer = context.get_user_input()
            if _first_text(current) == 'chat':
                message = new_text_message(
                    f'got {answer}', context_id=context_id, task_id=task_id
                )
                message.metadata.update({'shown': len(current.history)})
                await updater.update_status(
                    TaskState.TASK_STATE_WORKING, message=message
                )
                await updater.requires_input(
                    new_text_message('more?', context_id=context_id, task_id=task_id)
                )
                return
            await self._step(updater, 2, f'got {answer}')
            await updater.add_artifact(
                [new_text_part(f'answer: {answer}')], name='answer'
            )
            await updater.complete()
            return
        if current is None and context.message is not None:
            await event_queue.enqueue_event(
                new_task(
                    task_id,
                    context_id,
                    TaskState.TASK_STATE_SUBMITTED,
                    history=[context.message],
                )
            )
        command, *args = context.get_user_input().split()
        if command == 'stream':
            count, delay = int(args[0]), int(args[1]) / 1000
            for step in range(1, count + 1):
                await self._step(updater, step, f'step {step}')
                await asyncio.sleep(delay)
            await updater.add_artifact([new_text_part(f'{count} steps')], name='result')
            await updater.complete()
        elif command == 'hold':
            try:
                for step in range(1, HOLD_LIMIT + 1):
                    await self._step(updater, step, f'tick {step}')
                    await asyncio.sleep(HOLD_TICK)
            except asyncio.CancelledError:
                self._probe(task_id)
                raise
            await updater.complete()
        elif command == 'idle':
            await self._step(updater, 1, 'waiting')
            try:
                await asyncio.sleep(HOLD_LIMIT * HOLD_TICK)
            except asyncio.CancelledError:
                self._probe(task_id)
                raise
            await updater.complete()
        elif command == 'big':
            await self._step(updater, 1, 'writing')
            size = int(args[0])
            noise = base64.b64encode(os.urandom(size))[:size].decode()  # No zlib gain.
            await updater.add_artifact([new_text_part(noise)], name='big')
            await updater.complete()
        elif command in ('ask', 'chat'):
            await self._step(updater, 1, 'thinking')
            await updater.requires_input(
                new_text_message('what size?', context_id=context_id, task_id=task_id)
            )
        else:
            await updater.failed(new_text_message(f'unknown script {command!r}'))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(
            event_queue, context.task_id or '', context.context_id or ''
        ).cancel()

    def _probe(self, task_id: str) -> None:
        probe = os.environ.get(PROBE_ENV)
        if probe:
            (pathlib.Path(probe) / f'{task_id}.cancelled').write_text(self.url)

    async def _step(self, updater: TaskUpdater, step: int, text: str) -> None:
        message = new_text_message(
            text, context_id=updater.context_id, task_id=updater.task_id
        )
        message.metadata.update({'step': step, 'served_by': self.url})
        await updater.update_status(TaskState.TASK_STATE_WORKING, message=message)


def _first_text(task: Task) -> str:
    """The text of the first part of the task's first message, if any."""
    for message in task.history:
        for part in message.parts:
            if part.text:
                return part.text
    return ''


def create_agent(url: str) -> tuple[ScriptedAgent, AgentCard]:
    card = AgentCard(
        name='e2e scripted agent',
        description='Streams, holds, or asks, as scripted by the message.',
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
            AgentSkill(
                id='script',
                name='Scripted run',
                description='stream N DELAY_MS, hold, idle, or ask.',
                tags=['test'],
            )
        ],
    )
    return ScriptedAgent(url), card
