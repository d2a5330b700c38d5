"""Fixtures of the multi-replica end-to-end tests.

The backend comes from ``A2A_SCALE_BACKEND`` (memory by default) and the
replica mode from ``A2A_SCALE_REPLICA_MODE`` (in-process for memory,
subprocess otherwise), so the Redis and AWS sessions run these same tests.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2a_scale.testing.replicas import ReplicaSet, serve_app

HERE = pathlib.Path(__file__).parent
AGENT = 'e2e_agents:create_agent'
TIMEOUT = 20.0


@pytest_asyncio.fixture
async def probe_dir(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> pathlib.Path:
    monkeypatch.setenv('A2A_SCALE_E2E_PROBE_DIR', str(tmp_path))
    return tmp_path


@pytest_asyncio.fixture
async def replicas(probe_dir: pathlib.Path) -> AsyncIterator[ReplicaSet]:
    async with ReplicaSet(AGENT, count=3, pythonpath=[str(HERE)]) as started:
        yield started


@dataclass
class Delivery:
    token: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return next(iter(self.body))

    @property
    def task_id(self) -> str:
        payload = self.body[self.kind]
        return str(payload.get('taskId') or payload.get('id') or '')

    @property
    def state(self) -> str:
        payload = self.body[self.kind]
        status = payload.get('status', {})
        return str(status.get('state', '')).removeprefix('TASK_STATE_')

    @property
    def step(self) -> int | None:
        message = self.body[self.kind].get('status', {}).get('message', {})
        step = message.get('metadata', {}).get('step')
        return None if step is None else int(step)


@dataclass
class WebhookReceiver:
    """Records every push delivery it receives."""

    url: str = ''
    deliveries: list[Delivery] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: Request) -> Response:
        body = json.loads(await request.body())
        token = request.headers.get('x-a2a-notification-token', '')
        async with self.changed:
            self.deliveries.append(Delivery(token, body))
            self.changed.notify_all()
        return Response(status_code=204)

    def for_task(self, task_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.task_id == task_id]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), TIMEOUT)


@pytest_asyncio.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    app = Starlette(routes=[Route('/hook', receiver.handle, methods=['POST'])])
    async with serve_app(app) as url:
        receiver.url = f'{url}/hook'
        yield receiver
