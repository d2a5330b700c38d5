"""`PostgresBackend`: the stores of one replica over PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope

from a2a_scale import Backend, BackendUnavailableError, ComponentHealth
from a2a_scale.tasks import LoggedEvents
from a2a_scale_postgres.connection import PoolHandle, connect, create_pool
from a2a_scale_postgres.hub import PostgresListener
from a2a_scale_postgres.lifecycle import PostgresQueueLifecycle
from a2a_scale_postgres.notify import PostgresNotifier
from a2a_scale_postgres.ops import PostgresClusterView
from a2a_scale_postgres.push import PostgresPushNotificationConfigStore
from a2a_scale_postgres.retention import RetentionResult, run_retention
from a2a_scale_postgres.running import PostgresRunningTasks
from a2a_scale_postgres.schema import (
    SchemaNotReadyError,
    channel_name,
    check_schema,
    migrate,
    quote_schema,
)
from a2a_scale_postgres.settings import PostgresSettings
from a2a_scale_postgres.store import PostgresTaskStore
from a2a_scale_postgres.stream import PostgresEventStream

if TYPE_CHECKING:
    from a2a_scale import ScaleSettings

logger = logging.getLogger(__name__)

_COMPONENTS = ('store', 'stream', 'push_store', 'replicas')
_COUNT_LIMIT = 100_000


class PostgresBackend(Backend):
    """Task store, event stream, push configs and lifecycle on PostgreSQL.

    A replica holds one command pool and one LISTEN connection, however many
    subscriptions it serves.

    Args:
        settings: The core settings (namespace, retention, instance id).
        postgres_settings: The PostgreSQL settings; read from the environment
            if omitted.
        owner_resolver: Scopes tasks and push configs to a caller.
    """

    name = 'postgres'

    def __init__(
        self,
        settings: ScaleSettings,
        postgres_settings: PostgresSettings | None = None,
        *,
        owner_resolver: OwnerResolver = resolve_user_scope,
    ) -> None:
        super().__init__(settings, owner_resolver=owner_resolver)
        self.postgres_settings = ps = postgres_settings or PostgresSettings()
        ps.check_dsn()
        self.schema = ps.schema_name or settings.namespace
        quote_schema(self.schema)
        self.pool = PoolHandle()
        self._app_name = f'a2a-scale:{settings.instance_id}'
        logged = LoggedEvents()
        self.notifier = PostgresNotifier(self.pool, channel_name(self.schema))
        self._task_store = PostgresTaskStore(
            self.pool,
            schema=self.schema,
            owner_resolver=self.owner_resolver,
            max_events_per_task=ps.max_events_per_task,
            logged=logged,
            notify_payload_limit=ps.notify_payload_limit,
            notifier=self.notifier,
        )
        self.listener = PostgresListener(
            lambda: connect(ps, name=f'{self._app_name}:listen'),
            channel=channel_name(self.schema),
            ping_interval=ps.ping_interval,
            ping_timeout=ps.command_timeout,
            backoff_base=ps.backoff_base,
            backoff_cap=ps.backoff_cap,
            describe=ps.mask,
        )
        self._event_stream = PostgresEventStream(
            self.pool,
            self.listener,
            schema=self.schema,
            logged=logged,
            max_events_per_task=ps.max_events_per_task,
            read_concurrency=ps.read_concurrency,
            backoff_base=ps.backoff_base,
            backoff_cap=ps.backoff_cap,
            notify_payload_limit=ps.notify_payload_limit,
            notifier=self.notifier,
        )
        self._push_config_store = PostgresPushNotificationConfigStore(
            self.pool,
            schema=self.schema,
            owner_resolver=self.owner_resolver,
        )
        self._lifecycle = PostgresQueueLifecycle(
            self.pool,
            schema=self.schema,
            instance_id=settings.instance_id,
        )
        self._running_tasks = PostgresRunningTasks(
            self.pool, schema=self.schema, instance_id=settings.instance_id
        )

    @property
    def task_store(self) -> PostgresTaskStore:
        """The shared, versioned task store."""
        return self._task_store

    @property
    def event_stream(self) -> PostgresEventStream:
        """The cross-replica event stream."""
        return self._event_stream

    @property
    def push_config_store(self) -> PostgresPushNotificationConfigStore:
        """The shared push-notification config store."""
        return self._push_config_store

    @property
    def lifecycle(self) -> PostgresQueueLifecycle:
        """This replica's registration."""
        return self._lifecycle

    @property
    def running_tasks(self) -> PostgresRunningTasks:
        """Which replica runs which task, next to the heartbeats."""
        return self._running_tasks

    @property
    def cluster_view(self) -> PostgresClusterView:
        """An operator's view of the namespace: every task, replica and event."""
        return PostgresClusterView(self.pool, self.listener, schema=self.schema)

    async def start(self) -> None:
        """Connects, provisions, and starts heartbeats and the retention job."""
        if self.started:
            return
        await super().start()
        self._loops.append(
            asyncio.create_task(
                self._every(
                    self.postgres_settings.retention_interval, self.run_retention
                ),
                name=f'a2a-scale-retention-{self.instance_id}',
            )
        )
        self._loops.append(
            asyncio.create_task(
                self._every(
                    self.postgres_settings.recheck_interval, self._event_stream.recheck
                ),
                name=f'a2a-scale-recheck-{self.instance_id}',
            )
        )

    async def run_retention(self) -> RetentionResult:
        """Runs one bounded pass of the retention job (if no replica holds it)."""
        result = await run_retention(
            self.pool,
            schema=self.schema,
            retention_seconds=self.settings.retention_seconds,
            batch=self.postgres_settings.retention_batch,
        )
        if result.tasks or result.logs:
            logger.info(
                'Retention deleted %d finished task(s) and %d orphaned log(s)',
                result.tasks,
                result.logs,
            )
        return result

    async def _connect(self) -> None:
        ps = self.postgres_settings
        try:
            self.pool.pool = await create_pool(ps, name=self._app_name)
            async with self.pool.acquire() as conn:
                if ps.create_schema:
                    await migrate(conn, self.schema)
                else:
                    await check_schema(conn, self.schema)
            await self.listener.wait_connected(ps.connect_timeout * 2)
        except SchemaNotReadyError:
            await self._close()
            raise
        except Exception as e:
            await self._close()
            raise BackendUnavailableError(
                f'Cannot use PostgreSQL at {ps.display_dsn} '
                f'(A2A_SCALE_POSTGRES_DSN): {type(e).__name__}: {ps.mask(str(e))}',
                address=ps.display_dsn,
            ) from None

    async def _close(self) -> None:
        try:
            async with asyncio.timeout(self.postgres_settings.command_timeout):
                await self.notifier.flush()
        except Exception as e:  # the re-check of other replicas covers it
            logger.warning('Unsent notifications at stop (%s)', type(e).__name__)
        await self.listener.close()
        pool, self.pool.pool = self.pool.pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self.postgres_settings.command_timeout):
                    await pool.close()
            except (TimeoutError, Exception):
                pool.terminate()

    async def health(self) -> list[ComponentHealth]:
        """Reports the store, stream, push store and replicas on PostgreSQL."""
        ps = self.postgres_settings
        where = f'{ps.display_dsn} schema={self.schema}'
        q = quote_schema(self.schema)
        start = time.perf_counter()
        try:
            row = await self.pool.fetchrow(
                f'SELECT (SELECT count(*) FROM {q}.replicas '  # noqa: S608
                'WHERE heartbeat_at > now() - make_interval(secs => $1)) AS live, '
                f'(SELECT count(*) FROM (SELECT 1 FROM {q}.tasks LIMIT $2) t) '
                f'AS tasks, (SELECT count(*) FROM {q}.push_configs) >= 0 AS push',
                float(self.settings.reap_after),
                _COUNT_LIMIT + 1,
            )
        except Exception as e:
            error = f'{where}: {type(e).__name__}: {ps.mask(str(e))}'
            return [ComponentHealth(c, False, error) for c in _COMPONENTS]
        latency = (time.perf_counter() - start) * 1000
        assert row is not None
        live, tasks = int(row['live']), int(row['tasks'])
        partial = f' (counted up to {_COUNT_LIMIT})' if tasks > _COUNT_LIMIT else ''
        return [
            ComponentHealth(
                'store',
                True,
                f'{where}{partial}',
                latency,
                {'tasks': min(tasks, _COUNT_LIMIT)},
            ),
            ComponentHealth(
                'stream',
                self.listener.connected,
                f'LISTEN {"up" if self.listener.connected else "down"} on '
                f'{self.listener.key_count} task(s)',
                counts={'subscriptions': self._event_stream.subscription_count},
            ),
            ComponentHealth('push_store', bool(row['push']), where),
            ComponentHealth('replicas', live > 0, '', counts={'live': live}),
        ]

    async def _purge(self) -> list[str]:
        """Drops the namespace's schema and everything in it."""
        q = quote_schema(self.schema)
        tasks = await self.pool.fetchval(f'SELECT count(*) FROM {q}.tasks')  # noqa: S608
        await self.pool.execute(f'DROP SCHEMA IF EXISTS {q} CASCADE')
        return [f'PostgreSQL schema {self.schema!r} ({tasks} task(s))']


def create_backend(
    settings: ScaleSettings,
    plugin_settings: Any,
    *,
    owner_resolver: OwnerResolver = resolve_user_scope,
) -> PostgresBackend:
    """Builds the PostgreSQL backend; does no I/O."""
    return PostgresBackend(settings, plugin_settings, owner_resolver=owner_resolver)
