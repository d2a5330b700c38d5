"""One trace across two replica processes, on Redis, AWS and PostgreSQL.

Replica A runs a streaming task; a client subscribes to it on replica B.
Each replica process installs an OpenTelemetry SDK tracer provider that
writes its spans to a file (`telemetry_support.create_agent`). B's delivery
spans link to the trace of A's saves: the trace context travelled with the
events through the backend's log.
"""

from __future__ import annotations

import asyncio
import pathlib
import uuid
from typing import Any

import pytest
from a2a.types.a2a_pb2 import (
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
)

from a2a_scale.testing.replicas import ReplicaSet, connect
from telemetry_support import SPAN_DIR_ENV, read_spans

pytestmark = pytest.mark.e2e

TESTS = pathlib.Path(__file__).parents[1]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    'target',
    [
        pytest.param('redis', marks=pytest.mark.redis),
        pytest.param('aws', marks=pytest.mark.aws),
        pytest.param('postgres', marks=pytest.mark.postgres),
    ],
    indirect=True,
)
async def test_a_delivery_on_b_links_to_the_trace_of_the_save_on_a(
    target: Any, tmp_path: pathlib.Path
) -> None:
    env = {**target.env, 'A2A_SCALE_TELEMETRY': 'on', SPAN_DIR_ENV: str(tmp_path)}
    namespace = f'otel-{uuid.uuid4().hex[:8]}'
    task_id = ''
    async with ReplicaSet(
        'telemetry_support:create_agent',
        count=2,
        backend=target.backend,
        mode='subprocess',
        namespace=namespace,
        env=env,
        pythonpath=[str(TESTS), str(TESTS / 'e2e')],
    ) as replicas:
        a, b = replicas[0], replicas[1]
        async with (
            connect(a.url, token='alice') as on_a,
            connect(b.url, token='alice') as on_b,
        ):
            request = SendMessageRequest(
                message=Message(
                    message_id=str(uuid.uuid4()),
                    role=Role.ROLE_USER,
                    parts=[Part(text='stream 8 100')],
                )
            )
            stream = on_a.send_message(request)
            async with asyncio.timeout(30):
                async for response in stream:
                    if response.HasField('task'):
                        task_id = response.task.id
                        break
                assert task_id
                seen = 0
                async for _ in on_b.subscribe(SubscribeToTaskRequest(id=task_id)):
                    seen += 1
                assert seen > 1
                await stream.aclose()
    if target.cleanup is not None:
        await target.cleanup(namespace)
    spans = list(read_spans(tmp_path))
    by_pid = {str(a.pid): 'A', str(b.pid): 'B'}
    saves_on_a = {
        s['trace_id']
        for pid, s in spans
        if by_pid.get(pid) == 'A'
        and s['name'] == 'a2a_scale.store.save'
        and s['attributes'].get('a2a_scale.task_id') == task_id
    }
    deliveries_on_b = [
        s
        for pid, s in spans
        if by_pid.get(pid) == 'B'
        and s['name'] == 'a2a_scale.stream.deliver'
        and s['attributes'].get('a2a_scale.task_id') == task_id
    ]
    assert saves_on_a
    assert deliveries_on_b
    assert {t for s in deliveries_on_b for t in s['links']} & saves_on_a
    assert all(
        s['attributes']['a2a_scale.backend'] == target.backend for s in deliveries_on_b
    )
