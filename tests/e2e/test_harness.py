"""The replica harness itself: modes, identities and teardown."""

from __future__ import annotations

import asyncio
import os
import pathlib

import httpx
import pytest
from a2a.helpers import new_text_message
from a2a.types.a2a_pb2 import Role, SendMessageRequest, TaskState

from a2a_scale.errors import ConfigurationError
from a2a_scale.testing.replicas import ReplicaSet, connect

pytestmark = pytest.mark.e2e

HERE = pathlib.Path(__file__).parent
AGENT = 'e2e_agents:create_agent'


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.asyncio
async def test_subprocess_replica_serves_and_is_stopped_by_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv('A2A_SCALE_BACKEND', 'memory')
    replicas = ReplicaSet(AGENT, count=1, mode='subprocess', pythonpath=[str(HERE)])
    async with replicas:
        replica = replicas[0]
        assert replica.pid != os.getpid()
        async with connect(replica.url, token='alice') as client:
            async with asyncio.timeout(20):
                responses = [
                    r
                    async for r in client.send_message(
                        SendMessageRequest(
                            message=new_text_message('stream 2 1', role=Role.ROLE_USER)
                        )
                    )
                ]
        assert (
            responses[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
        )
    assert not _alive(replica.pid)
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(replica.url + '/.well-known/agent-card.json')


@pytest.mark.asyncio
async def test_inprocess_replicas_stop_serving_on_exit() -> None:
    async with ReplicaSet(
        AGENT, count=2, mode='inprocess', pythonpath=[str(HERE)]
    ) as rs:
        urls = rs.urls
        assert len(set(urls)) == 2
        assert all(r.backend is not None and r.backend.started for r in rs.replicas)
        backends = [r.backend for r in rs.replicas]
    assert all(b is not None and not b.started for b in backends)
    async with httpx.AsyncClient() as http:
        for url in urls:
            with pytest.raises(httpx.ConnectError):
                await http.get(url + '/.well-known/agent-card.json')


def test_memory_cannot_share_state_across_processes() -> None:
    with pytest.raises(ConfigurationError, match='A2A_SCALE_REPLICA_MODE'):
        ReplicaSet(AGENT, count=3, backend='memory', mode='subprocess')


def test_subprocess_mode_needs_an_importable_agent() -> None:
    with pytest.raises(ConfigurationError, match='module:factory'):
        ReplicaSet(lambda url: None, count=1, backend='memory', mode='subprocess')  # type: ignore[arg-type,return-value]
