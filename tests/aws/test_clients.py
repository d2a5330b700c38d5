"""Reaching AWS: an application's session, bounded timeouts, a black hole.

A backend can take the application's own ``aioboto3.Session`` (its
credentials, profile and region), and its startup against an endpoint that
accepts connections and never answers fails within the configured connect
and read timeouts, naming the endpoint.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aioboto3
import pytest

from a2a_scale import (
    Backend,
    BackendUnavailableError,
    ConfigurationError,
    load_backend,
)
from a2a_scale.testing import ClusterConformance
from a2a_scale.testing.helpers import TaskWriter, make_task, user_context
from a2a_scale_aws.backend import AWSBackend
from a2a_scale_aws.clients import open_clients
from a2a_scale_aws.names import ResourceNames
from a2a_scale_aws.testing import FAKE_CREDENTIALS
from black_hole import BlackHole

pytestmark = pytest.mark.aws

BLACK_HOLE_PORT = 6602
CLOSED_PORT = 6603  # nothing listens here
# Startup must fail within connect + read timeouts (1 s each here); the bound
# is generous for a loaded machine.
BOUND = 10.0


@pytest.fixture
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No credentials in the environment or shared files: only a session's."""
    for key in FAKE_CREDENTIALS:
        monkeypatch.delenv(key, raising=False)
    for key in ('AWS_PROFILE', 'AWS_ENDPOINT_URL', 'AWS_DEFAULT_REGION'):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('AWS_SHARED_CREDENTIALS_FILE', str(tmp_path / 'none'))
    monkeypatch.setenv('AWS_CONFIG_FILE', str(tmp_path / 'none'))
    monkeypatch.setenv('AWS_EC2_METADATA_DISABLED', 'true')


def _session() -> aioboto3.Session:
    return aioboto3.Session(
        aws_access_key_id='app-key',
        aws_secret_access_key='app-secret',
        region_name='us-east-1',
    )


class TestApplicationSession(ClusterConformance):
    """``load_backend('aws', session=..., endpoint_url=...)`` with no other
    credentials anywhere: every call must go through the given session."""

    timeout = 10.0

    @pytest.fixture(autouse=True)
    def _server(self, moto_endpoint: str, no_ambient_credentials: None) -> None:
        self.endpoint = moto_endpoint

    def create_backend(self, namespace: str) -> Backend:
        return load_backend(
            'aws',
            namespace=namespace,
            session=_session(),
            endpoint_url=self.endpoint,
            create_resources=True,
            receive_wait_seconds=1,
        )

    async def destroy_namespace(self, namespace: str) -> None:
        names = ResourceNames(namespace)
        async with open_clients(
            region='us-east-1', endpoint_url=self.endpoint, session=_session()
        ) as c:
            await c.dynamodb.delete_table(TableName=names.table)
            topic = f'arn:aws:sns:us-east-1:123456789012:{names.topic}'
            await c.sns.delete_topic(TopicArn=topic)


@pytest.mark.asyncio
async def test_without_a_session_there_are_no_credentials(
    moto_endpoint: str, no_ambient_credentials: None
) -> None:
    """The check above can fail: without the session, startup cannot sign."""
    backend = load_backend('aws', endpoint_url=moto_endpoint, create_resources=True)
    with pytest.raises(Exception, match=r'(?i)credentials'):
        await backend.start()


async def _fails_fast(backend: Backend) -> BackendUnavailableError:
    started = time.monotonic()

    async def start() -> None:
        async with asyncio.timeout(120):
            await backend.start()

    with pytest.raises(BackendUnavailableError) as info:
        await start()
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f'startup took {elapsed:.1f} s'
    assert '\n' not in str(info.value)
    return info.value


@pytest.mark.asyncio
@pytest.mark.usefixtures('aws_env')
async def test_black_hole_endpoint_fails_within_the_timeouts() -> None:
    endpoint = f'http://127.0.0.1:{BLACK_HOLE_PORT}'
    with BlackHole(BLACK_HOLE_PORT):
        backend = load_backend(
            'aws', endpoint_url=endpoint, connect_timeout=1, read_timeout=1
        )
        error = await _fails_fast(backend)
    assert endpoint in str(error)
    assert error.address == endpoint
    assert 'A2A_SCALE_AWS_READ_TIMEOUT' in str(error)


@pytest.mark.asyncio
@pytest.mark.usefixtures('aws_env')
async def test_refused_endpoint_fails_at_once() -> None:
    endpoint = f'http://127.0.0.1:{CLOSED_PORT}'
    backend = load_backend('aws', endpoint_url=endpoint, connect_timeout=1)
    error = await _fails_fast(backend)
    assert endpoint in str(error)


@pytest.mark.asyncio
async def test_long_polls_outlast_a_short_read_timeout(aws_env: dict[str, str]) -> None:
    """An SQS receive may wait its long-poll time on top of the read timeout."""
    async with open_clients(
        region='us-east-1',
        endpoint_url=aws_env['AWS_ENDPOINT_URL'],
        read_timeout=1,
        receive_wait_seconds=3,
    ) as clients:
        queue = await clients.sqs.create_queue(QueueName=f'poll-{time.time_ns()}')
        try:
            started = time.monotonic()
            reply = await clients.sqs.receive_message(
                QueueUrl=queue['QueueUrl'], WaitTimeSeconds=3
            )
            assert time.monotonic() - started >= 2.5
            assert not reply.get('Messages')
        finally:
            await clients.sqs.delete_queue(QueueUrl=queue['QueueUrl'])


@pytest.mark.asyncio
async def test_stop_keeps_the_applications_session_usable(
    moto_endpoint: str, no_ambient_credentials: None
) -> None:
    session = _session()
    namespace = f'c{time.time_ns()}'
    backend = load_backend(
        'aws',
        namespace=namespace,
        session=session,
        endpoint_url=moto_endpoint,
        create_resources=True,
        receive_wait_seconds=1,
    )
    assert isinstance(backend, AWSBackend)
    async with backend:
        context = user_context('alice')
        writer = TaskWriter(backend.task_store, context, make_task())
        await writer.create()
    async with session.client('dynamodb', endpoint_url=moto_endpoint) as db:
        await db.delete_table(TableName=ResourceNames(namespace).table)
    async with session.client('sns', endpoint_url=moto_endpoint) as sns:
        topic = f'arn:aws:sns:us-east-1:123456789012:{ResourceNames(namespace).topic}'
        await sns.delete_topic(TopicArn=topic)


def test_unknown_object_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match='sesion') as info:
        load_backend('aws', sesion=object())
    assert 'session' in str(info.value)


@pytest.mark.parametrize(
    ('variable', 'value'),
    [
        ('A2A_SCALE_AWS_CONNECT_TIMEOUT', '0'),
        ('A2A_SCALE_AWS_READ_TIMEOUT', '-1'),
        ('A2A_SCALE_AWS_MAX_ATTEMPTS', '0'),
    ],
)
def test_bad_timeouts_name_their_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_backend('aws')


def test_the_sessions_region_is_used_unless_the_setting_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = aioboto3.Session(region_name='eu-west-1')
    backend = load_backend('aws', session=session)
    assert isinstance(backend, AWSBackend)
    assert backend.region == 'eu-west-1'
    monkeypatch.setenv('A2A_SCALE_AWS_REGION', 'ap-south-1')
    backend = load_backend('aws', session=session)
    assert isinstance(backend, AWSBackend)
    assert backend.region == 'ap-south-1'
    assert load_backend('aws', session=aioboto3.Session()).region == 'ap-south-1'
