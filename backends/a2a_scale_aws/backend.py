"""`AWSBackend`: DynamoDB store and log, SNS doorbells, per-replica SQS queues."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TYPE_CHECKING

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope

from a2a_scale import (
    Backend,
    BackendNotStartedError,
    BackendUnavailableError,
    ComponentHealth,
)
from a2a_scale.health import (
    COMPONENTS,
    PUSH_STORE,
    REPLICAS,
    STORE,
    STREAM,
    not_started,
)
from a2a_scale_aws.clients import (
    AWSClients,
    BotoCoreError,
    CallCounter,
    ConnectTimeoutError,
    ReadTimeoutError,
    aioboto3,
    open_clients,
    probe_endpoint,
)
from a2a_scale_aws.errors import ResourceMissingError, error_code, error_message
from a2a_scale_aws.lifecycle import SqsQueueLifecycle
from a2a_scale_aws.names import ResourceNames
from a2a_scale_aws.ops import AWSClusterView
from a2a_scale_aws.provision import (
    check_table,
    count_tasks,
    deprovision,
    provision,
)
from a2a_scale_aws.push import DynamoDBPushNotificationConfigStore
from a2a_scale_aws.running import AWSRunningTasks
from a2a_scale_aws.settings import AWSSettings
from a2a_scale_aws.store import DynamoDBTaskStore
from a2a_scale_aws.stream import SnsSqsEventStream

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    from a2a_scale import ScaleSettings

HEALTH_SCAN_BUDGET = 1.0
"""Seconds `health` may spend counting the tasks of the table."""


async def resolve_topic_arn(
    clients: AWSClients, names: ResourceNames, account_id: str | None
) -> str:
    """The topic's ARN; asks STS for the account when not configured.

    Raises:
        ResourceMissingError: If the topic does not exist.
    """
    if account_id is None:
        identity = await clients.sts.get_caller_identity()
        account_id = str(identity['Account'])
    arn = str(names.topic_arn(region=clients.region, account=account_id))
    try:
        await clients.sns.get_topic_attributes(TopicArn=arn)
    except Exception as e:
        if error_code(e) in ('NotFound', 'NotFoundException'):
            raise ResourceMissingError(
                f'SNS topic {arn!r} does not exist: run "a2a-scale aws provision" '
                'or set A2A_SCALE_AWS_CREATE_RESOURCES=true'
            ) from None
        raise
    return arn


class AWSBackend(Backend):
    """A replica on DynamoDB, SNS and SQS.

    Args:
        settings: The core settings (namespace, instance id, retention).
        aws_settings: The AWS settings (region, endpoint, ...).
        owner_resolver: Maps a call context to the owner of tasks and configs.
        session: An aioboto3 session (the default uses the standard
            credential chain).
        call_counter: Counts every API call, for benchmarks and tests.
    """

    name = 'aws'

    def __init__(
        self,
        settings: ScaleSettings,
        aws_settings: AWSSettings | None = None,
        *,
        owner_resolver: OwnerResolver = resolve_user_scope,
        session: aioboto3.Session | None = None,
        call_counter: CallCounter | None = None,
    ) -> None:
        super().__init__(settings, owner_resolver=owner_resolver)
        self.aws_settings = aws_settings or AWSSettings()
        self.names = ResourceNames(settings.namespace)
        self.call_counter = call_counter
        self._session = session
        self._stack: contextlib.AsyncExitStack | None = None
        self.clients: AWSClients | None = None
        self._task_store = DynamoDBTaskStore(
            None,
            self.names.table,
            owner_resolver=self.owner_resolver,
            retention_seconds=settings.retention_seconds,
            active_ttl_seconds=self.aws_settings.active_ttl_seconds,
            compress_threshold=self.aws_settings.compress_threshold,
        )
        self._event_stream = SnsSqsEventStream(
            None,
            None,
            None,
            table_name=self.names.table,
            resync_interval=self.aws_settings.resync_interval,
            receive_wait_seconds=self.aws_settings.receive_wait_seconds,
            receive_linger=self.aws_settings.receive_linger,
            retention_seconds=settings.retention_seconds,
            compress_threshold=self.aws_settings.compress_threshold,
        )
        self._push_config_store = DynamoDBPushNotificationConfigStore(
            None,
            self.names.table,
            owner_resolver=self.owner_resolver,
            active_ttl_seconds=self.aws_settings.active_ttl_seconds,
        )
        self._running_tasks = AWSRunningTasks(
            None,
            self.names.table,
            instance_id=self.instance_id,
            ttl_seconds=self.aws_settings.active_ttl_seconds,
        )
        self._lifecycle: SqsQueueLifecycle | None = None

    @property
    def task_store(self) -> DynamoDBTaskStore:
        """The shared, versioned task store."""
        return self._task_store

    @property
    def event_stream(self) -> SnsSqsEventStream:
        """The cross-replica event stream."""
        return self._event_stream

    @property
    def push_config_store(self) -> DynamoDBPushNotificationConfigStore:
        """The shared push-notification config store."""
        return self._push_config_store

    @property
    def running_tasks(self) -> AWSRunningTasks:
        """Which replica runs which task, in the namespace's table."""
        return self._running_tasks

    @property
    def lifecycle(self) -> SqsQueueLifecycle:
        """This replica's queue (exists once connected)."""
        if self._lifecycle is None:
            raise BackendNotStartedError(
                'The \'aws\' backend is not connected: use "async with backend:".'
            )
        return self._lifecycle

    @property
    def cluster_view(self) -> AWSClusterView:
        """An operator's view of the namespace: every task, replica and event."""
        return AWSClusterView(self)

    @property
    def region(self) -> str:
        """The region: the setting, else the given session's, else the default."""
        aws = self.aws_settings
        session_region = self._session.region_name if self._session else None
        if 'region' in aws.model_fields_set or not session_region:
            return aws.region
        return str(session_region)

    async def _probe(self, session: aioboto3.Session) -> None:
        """Fails fast, naming the endpoint, when AWS does not answer.

        Raises:
            BackendUnavailableError: After at most the connect plus read
                timeouts without a reply.
        """
        aws = self.aws_settings
        limit = aws.connect_timeout + aws.read_timeout
        try:
            # The client's own timeouts bound the call; this is a backstop.
            async with asyncio.timeout(limit + 1):
                await probe_endpoint(
                    session,
                    region=self.region,
                    endpoint_url=aws.endpoint_url,
                    table=self.names.table,
                    connect_timeout=aws.connect_timeout,
                    read_timeout=aws.read_timeout,
                )
        except (BotoCoreError, TimeoutError) as e:
            kwargs = getattr(e, 'kwargs', None) or {}
            address = str(
                aws.endpoint_url or kwargs.get('endpoint_url') or self.address
            )
            if isinstance(e, ReadTimeoutError | TimeoutError):
                reason = (
                    f'no reply within {limit:g} s (A2A_SCALE_AWS_CONNECT_TIMEOUT='
                    f'{aws.connect_timeout:g} + A2A_SCALE_AWS_READ_TIMEOUT='
                    f'{aws.read_timeout:g})'
                )
            elif isinstance(e, ConnectTimeoutError):
                reason = (
                    f'no connection within {aws.connect_timeout:g} s '
                    '(A2A_SCALE_AWS_CONNECT_TIMEOUT)'
                )
            else:
                reason = f'{type(e).__name__}: {e}'
            raise BackendUnavailableError(
                f'Cannot reach AWS at {address} (A2A_SCALE_AWS_ENDPOINT_URL, '
                f'AWS_ENDPOINT_URL, A2A_SCALE_AWS_REGION): {reason}',
                address=address,
            ) from None

    async def _connect(self) -> None:
        aws = self.aws_settings
        session = self._session or aioboto3.Session()
        await self._probe(session)
        stack = contextlib.AsyncExitStack()
        try:
            clients = await stack.enter_async_context(
                open_clients(
                    region=self.region,
                    endpoint_url=aws.endpoint_url,
                    session=session,
                    connect_timeout=aws.connect_timeout,
                    read_timeout=aws.read_timeout,
                    max_attempts=aws.max_attempts,
                    receive_wait_seconds=aws.receive_wait_seconds,
                )
            )
            if self.call_counter is not None:
                self.call_counter.attach(clients)
            if self.aws_settings.create_resources:
                topic_arn = (await provision(clients, self.names)).topic_arn
            else:
                await check_table(clients, self.names.table)
                topic_arn = await resolve_topic_arn(
                    clients, self.names, self.aws_settings.account_id
                )
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self.clients = stack, clients
        self._task_store._db = clients.dynamodb
        self._push_config_store._db = clients.dynamodb
        self._running_tasks._db = clients.dynamodb
        stream = self._event_stream
        stream.use_clients(clients.dynamodb, clients.sns, clients.sqs)
        stream.topic_arn = topic_arn
        self._task_store.on_saved = stream.notify
        self._lifecycle = SqsQueueLifecycle(
            clients,
            self.names,
            instance_id=self.instance_id,
            topic_arn=topic_arn,
            stream=stream,
            heartbeat_ttl=max(3600.0, 10 * self.settings.reap_after),
        )

    async def _close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    @property
    def address(self) -> str:
        """The endpoint (e.g. a moto server), else the region."""
        endpoint = self.aws_settings.endpoint_url or os.environ.get('AWS_ENDPOINT_URL')
        return endpoint or f'AWS {self.region}'

    async def _purge(self) -> list[str]:
        topic = self._event_stream.topic_arn
        if self.clients is None or topic is None:
            return []
        return await deprovision(self.clients, self.names, topic)

    async def health(self) -> list[ComponentHealth]:
        """Reports the table, the topic and queue, and the live replicas."""
        clients, lifecycle = self.clients, self._lifecycle
        if clients is None or lifecycle is None:
            return not_started()
        table = self.names.table
        started = time.perf_counter()
        try:
            await clients.dynamodb.describe_table(TableName=table)
            latency = (time.perf_counter() - started) * 1000
            tasks = await count_tasks(clients, table, budget=HEALTH_SCAN_BUDGET)
            await clients.sns.get_topic_attributes(
                TopicArn=self._event_stream.topic_arn
            )
            if lifecycle.queue_url:
                await clients.sqs.get_queue_attributes(
                    QueueUrl=lifecycle.queue_url, AttributeNames=['QueueArn']
                )
            live = await lifecycle.live_instances(within=self.settings.reap_after)
        except Exception as e:
            error = f'{error_code(e) or type(e).__name__}: {error_message(e) or e}'
            return [ComponentHealth(c, False, error) for c in COMPONENTS]
        return [
            ComponentHealth(
                STORE,
                True,
                f'table {table}'
                + ('' if tasks.complete else ' (tasks counted in part: out of time)'),
                latency,
                {'tasks': tasks.count},
            ),
            ComponentHealth(
                STREAM,
                True,
                f'topic {self.names.topic}, queue {lifecycle.queue_name}',
                counts={'subscriptions': self._event_stream.subscriber_count()},
            ),
            ComponentHealth(PUSH_STORE, True, f'table {table}'),
            ComponentHealth(
                REPLICAS, self.instance_id in live, '', counts={'live': len(live)}
            ),
        ]


def create_backend(
    settings: ScaleSettings,
    plugin_settings: BaseSettings,
    *,
    owner_resolver: OwnerResolver,
    session: aioboto3.Session | None = None,
) -> AWSBackend:
    """Builds an `AWSBackend` (the ``aws`` plugin's factory).

    Args:
        settings: The core settings.
        plugin_settings: The `AWSSettings`.
        owner_resolver: Scopes tasks and push configs to a caller.
        session: The application's ``aioboto3.Session`` (its credentials,
            profile and region); by default a new one on the standard chain.
    """
    if not isinstance(plugin_settings, AWSSettings):
        raise TypeError(
            f'The aws backend needs AWSSettings, got {type(plugin_settings)!r}'
        )
    return AWSBackend(
        settings, plugin_settings, owner_resolver=owner_resolver, session=session
    )
