"""SIGTERM to a real ``a2a-scale serve`` process on a shared backend.

Two replica processes, A and B. A runs a task and streams it; A gets
SIGTERM. A must stop being ready, refuse new work with 503, let the task
finish within ``A2A_SCALE_DRAIN_SECONDS`` or hand it over, end its stream,
release its per-replica resources and exit 0, while B serves the rest.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, VERSION_HEADER

from serve_support import EXAMPLES, ROOT, ServeProcess, wait_ready
from service_support import need_service, reachable

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

E2E_AGENTS = str(ROOT / 'tests' / 'e2e')
HEADERS = {VERSION_HEADER: PROTOCOL_VERSION_CURRENT}
REDIS_HOST = os.environ.get('A2A_SCALE_TEST_REDIS_HOST', '127.0.0.1')
REDIS_PORT = int(os.environ.get('A2A_SCALE_TEST_REDIS_PORT', '6379'))
MOTO_PORT = 7450


def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {'jsonrpc': '2.0', 'id': 1, 'method': method, 'params': params}


def send(text: str) -> dict[str, Any]:
    message = {
        'messageId': uuid.uuid4().hex,
        'role': 'ROLE_USER',
        'parts': [{'text': text}],
    }
    return rpc('SendStreamingMessage', {'message': message})


def state_of(event: dict[str, Any]) -> str:
    holder = event.get('statusUpdate') or event.get('task') or {}
    return holder.get('status', {}).get('state', '')


def instance_of(replica: ServeProcess) -> str:
    found = re.search(r'instance (\S+)', replica.log())
    assert found, replica.log()
    return found.group(1)


@dataclass
class Shared:
    """A shared backend: its environment, and how to find a replica's leftovers."""

    env: dict[str, str]
    leftovers: Callable[[str], Awaitable[list[str]]]


@pytest.fixture(scope='module')
def moto_endpoint() -> Iterator[str]:
    need_service(
        'moto_server', importlib.util.find_spec('moto') is not None, 'moto missing'
    )
    from a2a_scale_aws.testing import MotoServer

    with MotoServer(port=MOTO_PORT) as server:
        yield server.endpoint


@pytest.fixture(scope='module')
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from a2a_scale_redis.testing import RedisCluster3, redis_binaries

    need_service('redis-server', redis_binaries() is not None, 'not on PATH')
    cluster = RedisCluster3(tmp_path_factory.mktemp('sigterm-cluster'))
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(
    params=[
        pytest.param('redis', marks=pytest.mark.redis),
        pytest.param('redis-cluster', marks=pytest.mark.redis),
        pytest.param('aws', marks=pytest.mark.aws),
    ]
)
def shared(request: pytest.FixtureRequest) -> Iterator[Shared]:
    namespace = f'sigterm-{uuid.uuid4().hex[:10]}'
    common = {'A2A_SCALE_NAMESPACE': namespace, 'A2A_SCALE_HEARTBEAT_INTERVAL': '1'}
    if request.param == 'redis-cluster':
        env = {
            **common,
            'A2A_SCALE_BACKEND': 'redis',
            'A2A_SCALE_REDIS_URL': request.getfixturevalue('cluster_url'),
            'A2A_SCALE_REDIS_CLUSTER': 'true',
        }
        yield Shared(env, lambda instance: redis_leftovers(env, instance))
        return
    if request.param == 'redis':
        need_service(
            'redis', reachable(REDIS_HOST, REDIS_PORT), f'{REDIS_HOST}:{REDIS_PORT}'
        )
        env = {
            **common,
            'A2A_SCALE_BACKEND': 'redis',
            'A2A_SCALE_REDIS_URL': f'redis://{REDIS_HOST}:{REDIS_PORT}/0',
        }
        yield Shared(env, lambda instance: redis_leftovers(env, instance))
        asyncio.run(redis_cleanup(env))
        return
    from a2a_scale_aws.testing import FAKE_CREDENTIALS

    endpoint = request.getfixturevalue('moto_endpoint')
    env = {
        **common,
        **FAKE_CREDENTIALS,
        'AWS_ENDPOINT_URL': endpoint,
        'A2A_SCALE_BACKEND': 'aws',
        'A2A_SCALE_AWS_CREATE_RESOURCES': 'true',
        'A2A_SCALE_AWS_RECEIVE_WAIT_SECONDS': '1',
    }
    yield Shared(env, lambda instance: aws_leftovers(env, instance))


async def redis_leftovers(env: dict[str, str], instance: str) -> list[str]:
    """The per-replica Redis entries `instance` left behind."""
    import redis.asyncio as redis

    from a2a_scale_redis.keys import KeySpace

    keys = KeySpace(env['A2A_SCALE_NAMESPACE'])
    client: Any
    if env.get('A2A_SCALE_REDIS_CLUSTER') == 'true':
        client = redis.RedisCluster.from_url(env['A2A_SCALE_REDIS_URL'])
    else:
        client = redis.Redis.from_url(env['A2A_SCALE_REDIS_URL'])
    try:
        left = []
        if await client.zscore(keys.instances, instance) is not None:
            left.append(f'heartbeat of {instance}')
        if await client.exists(keys.running_of(instance)):
            left.append(f'running-task records of {instance}')
        return left
    finally:
        await client.aclose()


async def redis_cleanup(env: dict[str, str]) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(env['A2A_SCALE_REDIS_URL'])
    try:
        async for key in client.scan_iter(match=f'*{env["A2A_SCALE_NAMESPACE"]}*'):
            await client.delete(key)
    finally:
        await client.aclose()


async def aws_leftovers(env: dict[str, str], instance: str) -> list[str]:
    """The SQS queue and SNS subscription `instance` left behind."""
    import boto3

    from a2a_scale_aws.names import ResourceNames

    names = ResourceNames(env['A2A_SCALE_NAMESPACE'])
    options = {
        'endpoint_url': env['AWS_ENDPOINT_URL'],
        'region_name': 'us-east-1',
        'aws_access_key_id': env['AWS_ACCESS_KEY_ID'],
        'aws_secret_access_key': env['AWS_SECRET_ACCESS_KEY'],
    }
    sqs = boto3.client('sqs', **options)
    sns = boto3.client('sns', **options)
    queue = names.queue(instance)
    left = [
        f'SQS queue {url}'
        for url in sqs.list_queues(QueueNamePrefix=queue).get('QueueUrls', [])
    ]
    topics = [t['TopicArn'] for t in sns.list_topics()['Topics']]
    for topic in topics:
        if topic.endswith(f':{names.topic}'):
            for subscription in sns.list_subscriptions_by_topic(TopicArn=topic)[
                'Subscriptions'
            ]:
                if subscription['Endpoint'].endswith(f':{queue}'):
                    left.append(f'SNS subscription {subscription["SubscriptionArn"]}')
    return left


async def stream_into(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], events: list[Any]
) -> None:
    async with http.stream('POST', url, json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith('data:'):
                events.append(json.loads(line[5:])['result'])


async def first_events(events: list[Any], count: int) -> None:
    async with asyncio.timeout(20):
        while len(events) < count:  # noqa: ASYNC110 (a stream from another process)
            await asyncio.sleep(0.02)


async def check_draining(http: httpx.AsyncClient, url: str) -> None:
    """A refuses new work with 503 while it drains, and is not ready."""
    async with asyncio.timeout(5):
        while (await http.get(f'{url}/readyz')).status_code == 200:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    refused = await http.post(url, json=send('stream 1 0'))
    assert refused.status_code == 503
    assert 'retry-after' in refused.headers


@pytest.mark.parametrize(
    ('drain', 'script', 'outcome'),
    [
        pytest.param('10', 'stream 10 200', 'TASK_STATE_COMPLETED', id='finishes'),
        pytest.param('1', 'hold', 'TASK_STATE_FAILED', id='handed-over'),
    ],
)
async def test_sigterm_drains_hands_over_and_releases(
    start_serve, shared: Shared, drain: str, script: str, outcome: str
) -> None:
    replica_a = await start_serve(
        'e2e_agents:create_agent',
        env={**shared.env, 'A2A_SCALE_DRAIN_SECONDS': drain},
        app_dir=E2E_AGENTS,
    )
    replica_b = await start_serve(
        'e2e_agents:create_agent', env=shared.env, app_dir=E2E_AGENTS
    )
    await wait_ready(replica_a.url)
    async with httpx.AsyncClient(headers=HEADERS, timeout=30) as http:
        on_a: list[Any] = []
        streaming = asyncio.create_task(
            stream_into(http, replica_a.url, send(script), on_a)
        )
        await first_events(on_a, 2)
        task_id = on_a[0]['task']['id']
        replica_a.signal(signal.SIGTERM)
        await check_draining(http, replica_a.url)
        async with asyncio.timeout(20):
            await streaming  # A's stream ends: it does not hang
        assert await replica_a.exit_code() == 0, replica_a.log()[-3000:]
        # A resubscribe on B shows the rest, through to the outcome.
        on_b: list[Any] = []
        body = rpc('SubscribeToTask', {'id': task_id})
        got = await http.post(replica_b.url, json=rpc('GetTask', {'id': task_id}))
        final = got.json()['result']['status']['state']
        if final != outcome:  # still being written: follow it on B
            async with asyncio.timeout(20):
                await stream_into(http, replica_b.url, body, on_b)
            final = state_of(on_b[-1])
        assert final == outcome
        if outcome == 'TASK_STATE_COMPLETED':
            assert state_of(on_a[-1]) == outcome  # finished within the drain
    assert await shared.leftovers(instance_of(replica_a)) == []
    assert await shared.leftovers(instance_of(replica_b)) != []  # B still runs


async def test_the_readme_pattern_exits_0_and_releases_on_sigterm(
    start_serve, shared: Shared
) -> None:
    """``run(create_agent, ...)`` in a script, as the README shows it."""
    replica = await start_serve(str(EXAMPLES / 'minimal_agent.py'), env=shared.env)
    await wait_ready(replica.url)
    async with httpx.AsyncClient(headers=HEADERS, timeout=30) as http:
        events: list[Any] = []
        await stream_into(http, replica.url, send('Ada'), events)
    assert state_of(events[-1]) == 'TASK_STATE_COMPLETED'
    replica.signal(signal.SIGTERM)
    assert await replica.exit_code() == 0, replica.log()[-3000:]
    assert await shared.leftovers(instance_of(replica)) == []
