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
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError(
        'The aws backend needs aioboto3. Install it with: pip install "a2a-scale[aws]"'
    ) from e

# A receive long-polls for up to 20 s: the read timeout must outlast it.
_CONFIG = Config(
    read_timeout=30,
    connect_timeout=5,
    retries={'mode': 'standard', 'max_attempts': 5},
    max_pool_connections=50,
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
) -> AsyncIterator[AWSClients]:
    """Opens the clients; credentials come from the standard chain.

    Args:
        region: The region of every client.
        endpoint_url: One endpoint for every service, or `None` to let
            botocore resolve it (``AWS_ENDPOINT_URL`` and its per-service
            variants are honoured there).
        session: An aioboto3 session to use instead of a new one.
    """
    session = session or aioboto3.Session()
    kwargs: dict[str, Any] = {'region_name': region, 'config': _CONFIG}
    if endpoint_url:
        kwargs['endpoint_url'] = endpoint_url
    async with contextlib.AsyncExitStack() as stack:
        dynamodb = await stack.enter_async_context(session.client('dynamodb', **kwargs))
        sns = await stack.enter_async_context(session.client('sns', **kwargs))
        sqs = await stack.enter_async_context(session.client('sqs', **kwargs))
        sts = await stack.enter_async_context(session.client('sts', **kwargs))
        yield AWSClients(dynamodb=dynamodb, sns=sns, sqs=sqs, sts=sts, region=region)
