"""`AWSBackend`: DynamoDB store and log, SNS doorbells, per-replica SQS queues."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope

from a2a_scale import Backend, BackendNotStartedError, ComponentHealth
from a2a_scale_aws.clients import AWSClients, CallCounter, open_clients
from a2a_scale_aws.errors import ResourceMissingError, error_code
from a2a_scale_aws.lifecycle import SqsQueueLifecycle
from a2a_scale_aws.names import ResourceNames
from a2a_scale_aws.provision import check_table, provision
from a2a_scale_aws.push import DynamoDBPushNotificationConfigStore
from a2a_scale_aws.settings import AWSSettings
from a2a_scale_aws.store import DynamoDBTaskStore
from a2a_scale_aws.stream import SnsSqsEventStream

if TYPE_CHECKING:
    import aioboto3
    from pydantic_settings import BaseSettings

    from a2a_scale import ScaleSettings


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
            owner_resolver=owner_resolver,
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
            owner_resolver=owner_resolver,
            active_ttl_seconds=self.aws_settings.active_ttl_seconds,
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
    def lifecycle(self) -> SqsQueueLifecycle:
        """This replica's queue (exists once connected)."""
        if self._lifecycle is None:
            raise BackendNotStartedError(
                'The \'aws\' backend is not connected: use "async with backend:".'
            )
        return self._lifecycle

    async def _connect(self) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            clients = await stack.enter_async_context(
                open_clients(
                    region=self.aws_settings.region,
                    endpoint_url=self.aws_settings.endpoint_url,
                    session=self._session,
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
        stream = self._event_stream
        stream._db, stream._sns, stream._sqs = (
            clients.dynamodb,
            clients.sns,
            clients.sqs,
        )
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

    async def health(self) -> list[ComponentHealth]:
        """Checks the table, the topic and this replica's queue."""
        if self.clients is None:
            return [ComponentHealth('aws', False, 'not started')]
        reports = []
        checks: list[tuple[str, Any]] = [
            (
                'task_store',
                self.clients.dynamodb.describe_table(TableName=self.names.table),
            ),
            (
                'event_stream',
                self.clients.sns.get_topic_attributes(
                    TopicArn=self._event_stream.topic_arn
                ),
            ),
        ]
        if self._lifecycle is not None and self._lifecycle.queue_url:
            checks.append(
                (
                    'lifecycle',
                    self.clients.sqs.get_queue_attributes(
                        QueueUrl=self._lifecycle.queue_url,
                        AttributeNames=['ApproximateNumberOfMessages'],
                    ),
                )
            )
        for component, call in checks:
            started = time.perf_counter()
            try:
                await call
            except Exception as e:
                reports.append(
                    ComponentHealth(component, False, error_code(e) or type(e).__name__)
                )
                continue
            latency = (time.perf_counter() - started) * 1000
            reports.append(ComponentHealth(component, True, '', latency))
        return reports


def create_backend(
    settings: ScaleSettings,
    plugin_settings: BaseSettings,
    *,
    owner_resolver: OwnerResolver,
) -> AWSBackend:
    """Builds an `AWSBackend` (the ``aws`` plugin's factory)."""
    if not isinstance(plugin_settings, AWSSettings):
        raise TypeError(
            f'The aws backend needs AWSSettings, got {type(plugin_settings)!r}'
        )
    return AWSBackend(settings, plugin_settings, owner_resolver=owner_resolver)
