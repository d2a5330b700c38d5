"""The examples, served by ``a2a-scale serve`` as real processes."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid

import httpx
import pytest
from a2a.helpers import new_text_message
from a2a.types.a2a_pb2 import Role, SendMessageRequest, TaskState
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, VERSION_HEADER

from a2a_scale.testing.replicas import connect

pytestmark = [pytest.mark.memory, pytest.mark.e2e, pytest.mark.asyncio]


def _text(artifact_parts: object) -> str:
    return ''.join(part.text for part in artifact_parts)  # type: ignore[attr-defined]


async def test_minimal_agent_answers_over_json_rpc_and_http_json(start_serve) -> None:
    replica = await start_serve('minimal_agent:create_agent')
    async with connect(replica.url, streaming=False) as client:
        message = new_text_message('Ada', role=Role.ROLE_USER)
        task = None
        async for response in client.send_message(SendMessageRequest(message=message)):
            task = response.task
        assert task is not None
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert _text(task.artifacts[0].parts) == 'Hello, Ada!'
    body = {
        'message': {
            'messageId': uuid.uuid4().hex,
            'role': 'ROLE_USER',
            'parts': [{'text': 'Grace'}],
        }
    }
    headers = {VERSION_HEADER: PROTOCOL_VERSION_CURRENT}
    async with httpx.AsyncClient(timeout=10, headers=headers) as http:
        answer = await http.post(f'{replica.url}/message:send', json=body)
        assert answer.status_code == 200, answer.text
        assert 'Hello, Grace!' in answer.text
    log = replica.log()
    assert 'backend memory' in log
    assert 'namespace a2a' in log
    assert 'not shared with other processes' in log
    replica.signal(signal.SIGTERM)
    assert await replica.exit_code() == 0


async def test_streaming_agent_takes_an_order_in_two_turns(start_serve) -> None:
    replica = await start_serve('streaming_agent:create_agent')
    async with connect(replica.url) as client:
        first = new_text_message('boots', role=Role.ROLE_USER)
        states = []
        task_id = context_id = ''
        request = SendMessageRequest(message=first)
        async with asyncio.timeout(20):
            async for response in client.send_message(request):
                if response.HasField('task'):
                    task_id, context_id = response.task.id, response.task.context_id
                    states.append(response.task.status.state)
                elif response.HasField('status_update'):
                    states.append(response.status_update.status.state)
        assert states[-1] == TaskState.TASK_STATE_INPUT_REQUIRED
        assert states.count(TaskState.TASK_STATE_WORKING) >= 2
        size = new_text_message(
            'M', role=Role.ROLE_USER, task_id=task_id, context_id=context_id
        )
        artifact = ''
        request = SendMessageRequest(message=size)
        async with asyncio.timeout(20):
            async for response in client.send_message(request):
                if response.HasField('artifact_update'):
                    artifact = _text(response.artifact_update.artifact.parts)
                elif response.HasField('status_update'):
                    states.append(response.status_update.status.state)
        assert states[-1] == TaskState.TASK_STATE_COMPLETED
        assert artifact == 'Order placed: boots, size M'
    replica.signal(signal.SIGINT)
    assert await replica.exit_code() == 0


async def test_serve_reports_a_bad_agent_in_one_line() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        '-c',
        'from a2a_scale.cli import main; main()',
        'serve',
        '--agent',
        'no_such_module:create_agent',
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "cannot import module 'no_such_module'" in lines[0]
    assert 'Traceback' not in out.decode() + err.decode()
