"""Two follow-ups sent at once to two replicas: no user turn is lost.

A ``chat`` task parks in input-required after every turn, so it always
accepts a follow-up: both messages of every round must be applied, one turn
after the other (the second turn is shown the first one's message).
``A2A_SCALE_TEST_RACE_ROUNDS`` sets how many rounds run (20 by default, to
keep CI short; the figures in the docs come from 100).
"""

from __future__ import annotations

import asyncio
import os

import pytest
from a2a.helpers import new_text_message
from a2a.types.a2a_pb2 import (
    GetTaskRequest,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)

from a2a_scale.testing.replicas import ReplicaSet, connect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROUNDS = int(os.environ.get('A2A_SCALE_TEST_RACE_ROUNDS', '20'))
TIMEOUT = 30.0
ALICE = 'alice'


def _message(text: str, task: Task | None = None) -> SendMessageRequest:
    message = new_text_message(text, role=Role.ROLE_USER)
    if task is not None:
        message.task_id = task.id
        message.context_id = task.context_id
    return SendMessageRequest(message=message)


async def _send(client: object, request: SendMessageRequest) -> Task:
    last = None
    async for response in client.send_message(request):  # type: ignore[attr-defined]
        if response.HasField('task'):
            last = response.task
    assert last is not None
    return last


@pytest.mark.asyncio
async def test_concurrent_follow_ups_on_two_replicas_are_both_applied(
    replicas: ReplicaSet,
) -> None:
    lost = overlapping = 0
    errors: list[str] = []
    async with (
        connect(replicas[0].url, token=ALICE, streaming=False) as on_a,
        connect(replicas[1].url, token=ALICE, streaming=False) as on_b,
    ):
        for _ in range(ROUNDS):
            async with asyncio.timeout(TIMEOUT):
                parked = await _send(on_a, _message('chat'))
                assert parked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
                follow_ups = [_message(f'answer {n}', parked) for n in (1, 2)]
                results = await asyncio.gather(
                    _send(on_a, follow_ups[0]),
                    _send(on_b, follow_ups[1]),
                    return_exceptions=True,
                )
                task = await on_a.get_task(GetTaskRequest(id=parked.id))
            history = {m.message_id for m in task.history}
            failed = [r for r in results if isinstance(r, BaseException)]
            errors.extend(f'{type(r).__name__}: {r}'[:160] for r in failed)
            if failed or any(f.message.message_id not in history for f in follow_ups):
                lost += 1
            shown = [
                int(m.metadata['shown']) for m in task.history if 'shown' in m.metadata
            ]
            if len(set(shown)) < len(shown):
                overlapping += 1
    summary = (
        f'{lost}/{ROUNDS} rounds lost a user turn, {overlapping} ran both turns '
        f'at once; errors: {sorted(set(errors))[:3]}'
    )
    print(f'follow-up race [{replicas.backend}]: {summary}')
    assert lost == 0, summary
    assert overlapping == 0, summary
