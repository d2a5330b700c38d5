"""Fixtures of the multi-replica end-to-end tests.

Every scenario runs once per target: ``memory`` (three in-process replicas),
``redis`` (the shared redis-server), ``redis-cluster`` (a local 3-master
Redis Cluster started here), ``aws`` (a moto server started here) and
``postgres`` (the shared PostgreSQL server, a schema per test). The service
targets run three replica **processes** and carry the ``redis``, ``aws`` or
``postgres`` marker, so each nox session picks its own with ``-m``.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2a_scale.testing.replicas import ReplicaSet, serve_app
from service_support import need_service

HERE = pathlib.Path(__file__).parent
AGENT = 'e2e_agents:create_agent'
TIMEOUT = 20.0


@pytest_asyncio.fixture
async def probe_dir(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> pathlib.Path:
    monkeypatch.setenv('A2A_SCALE_E2E_PROBE_DIR', str(tmp_path))
    return tmp_path


@dataclass
class Target:
    """A backend the replicas share, and the environment that selects it."""

    backend: str
    env: dict[str, str] = field(default_factory=dict)
    cleanup: Callable[[str], Awaitable[None]] | None = None
    """Deletes what a test's namespace left behind, if the target needs it."""


def _redis_target() -> Target:
    host = os.environ.get('A2A_SCALE_TEST_REDIS_HOST', '127.0.0.1')
    port = int(os.environ.get('A2A_SCALE_TEST_REDIS_PORT', '6379'))
    try:
        socket.create_connection((host, port), timeout=1.0).close()
        up = True
    except OSError:
        up = False
    need_service('redis', up, f'{host}:{port}')
    return Target('redis', {'A2A_SCALE_REDIS_URL': f'redis://{host}:{port}/0'})


def _postgres_target() -> Target:
    from urllib.parse import urlsplit

    from a2a_scale_postgres.testing import drop_schema

    dsn = os.environ.get(
        'A2A_SCALE_TEST_POSTGRES_DSN', 'postgresql://postgres@127.0.0.1:5432/test'
    )
    parts = urlsplit(dsn)
    try:
        socket.create_connection(
            (parts.hostname or '127.0.0.1', parts.port or 5432), timeout=1.0
        ).close()
        up = True
    except OSError:
        up = False
    need_service('postgres', up, f'{parts.hostname}:{parts.port}')

    async def cleanup(namespace: str) -> None:
        await drop_schema(dsn, namespace)

    return Target(
        'postgres',
        {'A2A_SCALE_POSTGRES_DSN': dsn, 'A2A_SCALE_POSTGRES_CREATE_SCHEMA': 'true'},
        cleanup,
    )


@pytest.fixture(
    scope='session',
    params=[
        pytest.param('memory', marks=pytest.mark.memory),
        pytest.param('redis', marks=pytest.mark.redis),
        pytest.param('redis-cluster', marks=pytest.mark.redis),
        pytest.param('aws', marks=pytest.mark.aws),
        pytest.param('postgres', marks=pytest.mark.postgres),
    ],
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """The backend of this run of the scenarios, with its service started."""
    name = request.param
    if name == 'memory':
        yield Target('memory')
    elif name == 'redis':
        yield _redis_target()
    elif name == 'postgres':
        yield _postgres_target()
    elif name == 'redis-cluster':
        from a2a_scale_redis.testing import RedisCluster3, redis_binaries

        need_service('redis-server', redis_binaries() is not None, 'not on PATH')
        cluster = RedisCluster3(tmp_path_factory.mktemp('e2e-cluster'))
        cluster.start()
        try:
            yield Target(
                'redis',
                {'A2A_SCALE_REDIS_URL': cluster.url, 'A2A_SCALE_REDIS_CLUSTER': 'true'},
            )
        finally:
            cluster.stop()
    else:
        from a2a_scale_aws.testing import FAKE_CREDENTIALS, MotoServer

        with MotoServer() as server:
            yield Target(
                'aws',
                {
                    **FAKE_CREDENTIALS,
                    'AWS_ENDPOINT_URL': server.endpoint,
                    'A2A_SCALE_AWS_CREATE_RESOURCES': 'true',
                    'A2A_SCALE_AWS_RECEIVE_WAIT_SECONDS': '1',
                },
            )


@pytest_asyncio.fixture
async def replicas(
    target: Target, probe_dir: pathlib.Path
) -> AsyncIterator[ReplicaSet]:
    async with ReplicaSet(
        AGENT,
        count=3,
        backend=target.backend,
        env=target.env,
        pythonpath=[str(HERE)],
    ) as started:
        yield started
    if target.cleanup is not None:
        await target.cleanup(started.namespace)


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
