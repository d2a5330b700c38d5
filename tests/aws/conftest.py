"""Fixtures of the AWS backend tests: a moto server subprocess on loopback."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from a2a_scale import ScaleSettings
from a2a_scale_aws.backend import AWSBackend
from a2a_scale_aws.settings import AWSSettings
from a2a_scale_aws.testing import FAKE_CREDENTIALS, MotoServer
from service_support import need_service


@pytest.fixture(scope='session')
def moto_endpoint() -> Iterator[str]:
    """Starts one moto server for the session and stops it by pid."""
    need_service(
        'moto_server',
        importlib.util.find_spec('moto') is not None,
        'moto is not installed (pip install "moto[server]")',
    )
    with MotoServer() as server:
        yield server.endpoint


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials and the moto endpoint in the environment."""
    env = {**FAKE_CREDENTIALS, 'AWS_ENDPOINT_URL': moto_endpoint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ('AWS_PROFILE', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE'):
        monkeypatch.delenv(key, raising=False)
    return env


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f't{uuid.uuid4().hex[:12]}'


@pytest_asyncio.fixture
async def clients(aws_env: dict[str, str]) -> AsyncIterator[object]:
    """Open DynamoDB, SNS and SQS clients on the moto server."""
    from a2a_scale_aws.clients import AWSClients, open_clients

    async with open_clients(region='us-east-1', endpoint_url=None) as opened:
        assert isinstance(opened, AWSClients)
        yield opened


@pytest.fixture
def make_backend(aws_env: dict[str, str]) -> Callable[..., AWSBackend]:
    """Builds unstarted AWS backends on the moto server."""

    def make(namespace: str, **overrides: Any) -> AWSBackend:
        counter = overrides.pop('call_counter', None)
        settings = {
            'endpoint_url': aws_env['AWS_ENDPOINT_URL'],
            'create_resources': True,
            'receive_wait_seconds': 1,
            **overrides,
        }
        return AWSBackend(
            ScaleSettings(namespace=namespace, backend='aws'),
            AWSSettings(**settings),
            call_counter=counter,
        )

    return make
