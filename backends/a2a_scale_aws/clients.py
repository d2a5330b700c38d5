"""The aioboto3 clients of one replica, and an API call counter."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

try:
    import aioboto3
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        ReadTimeoutError,
    )
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError(
        'The aws backend needs aioboto3. Install it with: pip install "a2a-scale[aws]"'
    ) from e

__all__ = [
    'AWSClients',
    'BotoCoreError',
    'CallCounter',
    'ConnectTimeoutError',
    'ReadTimeoutError',
    'aioboto3',
    'client_config',
    'open_clients',
    'probe_endpoint',
]

MAX_POOL_CONNECTIONS = 50


def client_config(
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
    max_attempts: int = 5,
) -> Config:
    """The botocore configuration of every client.

    A call fails after ``max_attempts`` tries of at most ``connect_timeout``
    plus ``read_timeout`` seconds each (and the standard backoff between).
    """
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={'mode': 'standard', 'total_max_attempts': max_attempts},
        max_pool_connections=MAX_POOL_CONNECTIONS,
    )


@dataclass
class AWSClients:
    """Open DynamoDB, SNS and SQS clients (aiobotocore)."""

    dynamodb: Any
    sns: Any
    sqs: Any
    sts: Any
    region: str


class CallCounter:
    """Counts the API calls made by clients, by ``service.Operation``.

    Registered on botocore's ``before-call`` event, so each logical call is
    counted once, whatever the SDK's retries do.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, clients: AWSClients) -> None:
        """Starts counting the calls of `clients`."""
        for client in (clients.dynamodb, clients.sns, clients.sqs, clients.sts):
            client.meta.events.register('before-call.*.*', self._on_call)

    def _on_call(self, model: Any, **kwargs: Any) -> None:
        del kwargs
        self.calls[f'{model.service_model.service_id.hyphenize()}.{model.name}'] += 1

    def reset(self) -> None:
        """Forgets every count."""
        self.calls.clear()

    def total(self, prefix: str = '') -> int:
        """The number of calls whose name starts with `prefix`."""
        return sum(n for name, n in self.calls.items() if name.startswith(prefix))


@contextlib.asynccontextmanager
async def open_clients(
    *,
    region: str,
    endpoint_url: str | None,
    session: aioboto3.Session | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
    max_attempts: int = 5,
    receive_wait_seconds: int = 20,
) -> AsyncIterator[AWSClients]:
    """Opens the clients; credentials come from the session's chain.

    Args:
        region: The region of every client.
        endpoint_url: One endpoint for every service, or `None` to let
            botocore resolve it (``AWS_ENDPOINT_URL`` and its per-service
            variants are honoured there).
        session: An aioboto3 session to use instead of a new one (the
            application's credentials, profile or role).
        connect_timeout: Seconds to open a connection.
        read_timeout: Seconds to wait for a reply.
        max_attempts: Tries of each call, the first included.
        receive_wait_seconds: The SQS long-poll wait, which the SQS client
            adds to its read timeout.
    """
    session = session or aioboto3.Session()
    config = client_config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=max_attempts,
    )
    polling = client_config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout + receive_wait_seconds,
        max_attempts=max_attempts,
    )
    kwargs: dict[str, Any] = {'region_name': region}
    if endpoint_url:
        kwargs['endpoint_url'] = endpoint_url
    async with contextlib.AsyncExitStack() as stack:

        async def client(service: str, client_config: Config) -> Any:
            return await stack.enter_async_context(
                session.client(service, config=client_config, **kwargs)
            )

        yield AWSClients(
            dynamodb=await client('dynamodb', config),
            sns=await client('sns', config),
            sqs=await client('sqs', polling),
            sts=await client('sts', config),
            region=region,
        )


async def probe_endpoint(
    session: aioboto3.Session,
    *,
    region: str,
    endpoint_url: str | None,
    table: str,
    connect_timeout: float,
    read_timeout: float,
) -> str:
    """Makes one DynamoDB call, without retries, to see that AWS answers.

    Any reply counts, an error reply included (a missing table or a denied
    permission is for the caller's later checks to report).

    Returns:
        The endpoint that answered.

    Raises:
        botocore.exceptions.BotoCoreError: If there was no reply (refused,
            unresolvable, timed out).
    """
    config = client_config(
        connect_timeout=connect_timeout, read_timeout=read_timeout, max_attempts=1
    )
    kwargs: dict[str, Any] = {'region_name': region, 'config': config}
    if endpoint_url:
        kwargs['endpoint_url'] = endpoint_url
    async with session.client('dynamodb', **kwargs) as dynamodb:
        endpoint = str(dynamodb.meta.endpoint_url)
        with contextlib.suppress(ClientError):
            await dynamodb.describe_table(TableName=table)
        return endpoint
