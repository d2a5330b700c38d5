"""`RedisBackend`: the stores of one replica over Redis or Redis Cluster."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope

from a2a_scale import (
    Backend,
    BackendUnavailableError,
    ComponentHealth,
    ConfigurationError,
    telemetry,
)
from a2a_scale.health import COMPONENTS, PUSH_STORE, REPLICAS, STORE, STREAM
from a2a_scale.tasks import LoggedEvents
from a2a_scale_redis.connection import (
    AnyRedis,
    MasterNotFoundError,
    RedisCluster,
    RedisTimeoutError,
    close_client,
    create_client,
    create_pubsub_client,
    describe_client,
    is_cluster,
)
from a2a_scale_redis.feed import RedisEventFeed, sweep_feed
from a2a_scale_redis.hub import RedisWakeupHub
from a2a_scale_redis.keys import KeySpace
from a2a_scale_redis.lifecycle import RedisQueueLifecycle
from a2a_scale_redis.namespace import count_keys, purge_namespace, task_pattern
from a2a_scale_redis.ops import RedisClusterView
from a2a_scale_redis.push import RedisPushNotificationConfigStore
from a2a_scale_redis.retention import RedisIndexSweeper
from a2a_scale_redis.running import RedisRunningTasks
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.sharded import (
    ShardedWakeupHub,
    check_sharded_pubsub,
    node_client,
)
from a2a_scale_redis.store import RedisTaskStore
from a2a_scale_redis.stream import RedisEventStream

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis

    from a2a_scale import ScaleSettings

HEALTH_SCAN_BUDGET = 1.0
"""Seconds `health` may spend counting the namespace's tasks."""


class RedisBackend(Backend):
    """Task store, event stream, push configs and lifecycle on Redis.

    Args:
        settings: The core settings (namespace, retention, instance id).
        redis_settings: The Redis settings; read from the environment if
            omitted.
        owner_resolver: Scopes tasks and push configs to a caller.
        client: A ready `redis.asyncio.Redis` or `RedisCluster` to use
            instead of one built from the settings' URL; it is never closed
            by `stop()`. The Pub/Sub connection goes where it connects.
        pubsub_client_factory: Builds the client of the Pub/Sub connection;
            by default one like `client`. Not used on a Cluster, where
            wake-ups are sharded (``SPUBLISH``, Redis 7+) and the hub keeps
            one connection per master (`ShardedWakeupHub`).

    Raises:
        ConfigurationError: If ``cluster`` is set but `client` is not a
            `RedisCluster`.
    """

    name = 'redis'

    def __init__(
        self,
        settings: ScaleSettings,
        redis_settings: RedisSettings | None = None,
        *,
        owner_resolver: OwnerResolver = resolve_user_scope,
        client: AnyRedis | None = None,
        pubsub_client_factory: Callable[[], Redis] | None = None,
    ) -> None:
        super().__init__(settings, owner_resolver=owner_resolver)
        self.redis_settings = rs = redis_settings or RedisSettings()
        name = f'a2a-scale:{settings.namespace}:{settings.instance_id}'
        self.client: AnyRedis = (
            client if client is not None else create_client(rs, client_name=name)
        )
        self._owns_client = client is None
        if rs.cluster and not is_cluster(self.client):
            raise ConfigurationError(
                'A2A_SCALE_REDIS_CLUSTER is true but the given client is a '
                f'{type(self.client).__name__}, not a RedisCluster',
                variable='A2A_SCALE_REDIS_CLUSTER',
            )
        namespace = settings.namespace
        logged = LoggedEvents()
        self._task_store = RedisTaskStore(
            self.client,
            namespace=namespace,
            owner_resolver=self.owner_resolver,
            mode=rs.mode,
            cluster=is_cluster(self.client),
            retention_seconds=settings.retention_seconds,
            active_ttl_seconds=rs.active_ttl_seconds,
            stream_maxlen=rs.stream_maxlen,
            feed_maxlen=rs.feed_maxlen,
            logged=logged,
            inline_event_bytes=rs.inline_event_bytes,
        )
        self.hub: RedisWakeupHub | ShardedWakeupHub
        if isinstance(self.client, RedisCluster):
            # Sharded Pub/Sub (Redis 7+): one connection per master.
            self.hub = ShardedWakeupHub(
                self.client,
                lambda node: node_client(node, client_name=f'{name}:pubsub'),
                control_channel=f'{{{namespace}:hub:{settings.instance_id}}}',
                ping_interval=rs.ping_interval,
                subscribe_timeout=rs.socket_timeout,
                backoff_base=rs.backoff_base,
                backoff_cap=rs.backoff_cap,
            )
        else:
            self.hub = RedisWakeupHub(
                pubsub_client_factory
                or (
                    lambda: create_pubsub_client(
                        self.client, client_name=f'{name}:pubsub'
                    )
                ),
                control_channel=f'{namespace}:hub:{settings.instance_id}',
                ping_interval=rs.ping_interval,
                subscribe_timeout=rs.socket_timeout,
                backoff_base=rs.backoff_base,
                backoff_cap=rs.backoff_cap,
            )
        self._event_stream = RedisEventStream(
            self.client,
            self.hub,
            sharded=isinstance(self.client, RedisCluster),
            namespace=namespace,
            mode=rs.mode,
            logged=logged,
            stream_maxlen=rs.stream_maxlen,
            retention_seconds=settings.retention_seconds,
            inline_event_bytes=rs.inline_event_bytes,
        )
        self._task_store.save_hook = self._event_stream
        self._push_config_store = RedisPushNotificationConfigStore(
            self.client,
            namespace=namespace,
            owner_resolver=self.owner_resolver,
            active_ttl_seconds=rs.active_ttl_seconds,
        )
        self._lifecycle = RedisQueueLifecycle(
            self.client,
            namespace=namespace,
            instance_id=settings.instance_id,
            reapers=[self._reap_feed],
            chores=[RedisIndexSweeper(self._task_store).sweep],
        )
        self._running_tasks = RedisRunningTasks(
            self.client,
            namespace=namespace,
            instance_id=settings.instance_id,
            batcher=self._task_store.batcher,
        )

    @property
    def task_store(self) -> RedisTaskStore:
        """The shared, versioned task store."""
        return self._task_store

    @property
    def event_stream(self) -> RedisEventStream:
        """The cross-replica event stream."""
        return self._event_stream

    @property
    def push_config_store(self) -> RedisPushNotificationConfigStore:
        """The shared push-notification config store."""
        return self._push_config_store

    @property
    def lifecycle(self) -> RedisQueueLifecycle:
        """This replica's registration."""
        return self._lifecycle

    @property
    def running_tasks(self) -> RedisRunningTasks:
        """Which replica runs which task, next to the replica registry."""
        return self._running_tasks

    @property
    def cluster_view(self) -> RedisClusterView:
        """An operator's view of the namespace: every task, replica and event."""
        return RedisClusterView(
            self.client,
            self.settings.namespace,
            feed_enabled=self.redis_settings.feed_maxlen > 0,
        )

    def event_feed(
        self, group: str, *, consumer: str | None = None, **options: Any
    ) -> RedisEventFeed:
        """A consumer of the namespace's event feed in consumer group `group`.

        Args:
            group: The consumer group; share it between replicas to split the
                events, or pass a per-replica name to see every event.
            consumer: The consumer name; defaults to this replica's id.
            **options: ``block_ms``, ``claim_idle_ms``, ``batch``.
        """
        return RedisEventFeed(
            self.client,
            namespace=self.settings.namespace,
            group=group,
            consumer=consumer or self.instance_id,
            **options,
        )

    async def _reap_feed(self, dead: str) -> None:
        """Releases the event-feed group and consumers of a dead replica."""
        live = set(await self._lifecycle.live_instances()) - {dead}
        await sweep_feed(
            self.client,
            namespace=self.settings.namespace,
            dead=dead,
            live=live,
            idle_ms=int(self.settings.reap_after * 1000),
        )

    async def _observe(self) -> None:
        """Sets the gauge of the longest event log among tasks followed here."""
        longest = await self._event_stream.longest_followed_log()
        if longest is not None:
            telemetry.set_gauge(
                'a2a_scale.backend.stream_length',
                longest,
                backend='redis',
                replica=self.instance_id,
            )

    async def _connect(self) -> None:
        """Checks Redis and subscribes the hub, within connect + socket timeouts.

        A first ping goes over a connection without retries, so that a wrong
        address, password or certificate fails at once with its own reason.

        Raises:
            BackendUnavailableError: Naming the address (password hidden)
                and the setting to check.
        """
        rs = self.redis_settings
        limit = rs.connect_timeout + rs.socket_timeout
        try:
            async with asyncio.timeout(limit):
                initialize = getattr(self.client, 'initialize', None)
                if initialize is not None:
                    await initialize()
                probe = create_pubsub_client(self.client, client_name=None)
                try:
                    await probe.ping()
                finally:
                    await probe.aclose()
                await self.client.ping()
                if isinstance(self.client, RedisCluster):
                    await check_sharded_pubsub(self.client)
                await self.hub.wait_connected(limit)
        except ConfigurationError:
            await self._close()
            raise
        except Exception as e:
            await self._close()
            raise self._unavailable(e, limit) from None

    def _unavailable(self, error: Exception, limit: float) -> BackendUnavailableError:
        rs = self.redis_settings
        if not self._owns_client:
            variable = "the application's client"
        elif rs.sentinels:
            variable = 'A2A_SCALE_REDIS_SENTINELS'
        else:
            variable = 'A2A_SCALE_REDIS_URL'
        if isinstance(error, TimeoutError | RedisTimeoutError):
            detail = self._redact(str(error))
            reason = (
                f'no reply within {limit:g} s (A2A_SCALE_REDIS_CONNECT_TIMEOUT='
                f'{rs.connect_timeout:g} + A2A_SCALE_REDIS_SOCKET_TIMEOUT='
                f'{rs.socket_timeout:g})' + (f': {detail}' if detail else '')
            )
        elif isinstance(error, MasterNotFoundError):
            reason = (
                f'no sentinel answered with master {rs.sentinel_master!r} '
                '(A2A_SCALE_REDIS_SENTINEL_MASTER)'
            )
        else:
            reason = f'{type(error).__name__}: {self._redact(str(error))}'
        return BackendUnavailableError(
            f'Cannot reach Redis at {self.address} ({variable}): {reason}',
            address=self.address,
        )

    async def _close(self) -> None:
        await self.hub.close()
        await self._task_store.batcher.close()
        if self._owns_client:
            await close_client(self.client)

    def _redact(self, text: str) -> str:
        secret = self.redis_settings.url.get_secret_value()
        password = secret.partition('@')[0].rpartition(':')[2] if '@' in secret else ''
        text = text.replace(password, '***') if password else text
        sentinel = self.redis_settings.sentinel_password
        if sentinel is not None and sentinel.get_secret_value():
            text = text.replace(sentinel.get_secret_value(), '***')
        return text.replace('\n', ' ')

    @property
    def address(self) -> str:
        """The Redis URL (or Sentinel master), password hidden."""
        if not self._owns_client:
            return describe_client(self.client)
        return self.redis_settings.display_address

    async def _purge(self) -> list[str]:
        deleted = await purge_namespace(self.client, self.settings.namespace)
        return [f'{deleted} Redis keys']

    async def health(self) -> list[ComponentHealth]:
        """Reports the store, stream, push store and replicas on Redis."""
        url = self.redis_settings.display_url
        namespace = self.settings.namespace
        start = time.perf_counter()
        try:
            await self.client.ping()
            latency = (time.perf_counter() - start) * 1000
            tasks = await count_keys(
                self.client, task_pattern(namespace), budget=HEALTH_SCAN_BUDGET
            )
            live = await self.client.zcount(
                KeySpace(namespace).instances,
                time.time() - self.settings.reap_after,
                '+inf',
            )
        except Exception as e:
            error = f'{url}: {type(e).__name__}: {self._redact(str(e))}'
            return [ComponentHealth(c, False, error) for c in COMPONENTS]
        partial = (
            '' if tasks.complete else ' (counted in part: the scan ran out of time)'
        )
        stream = self._event_stream
        return [
            ComponentHealth(
                STORE, True, f'{url}{partial}', latency, {'tasks': tasks.count}
            ),
            ComponentHealth(
                STREAM,
                self.hub.connected,
                f'mode={self.redis_settings.mode}, Pub/Sub '
                + ('connected' if self.hub.connected else 'disconnected'),
                counts={'subscriptions': stream.subscription_count},
            ),
            ComponentHealth(PUSH_STORE, True, url),
            ComponentHealth(REPLICAS, live > 0, '', counts={'live': int(live)}),
        ]


def create_backend(
    settings: ScaleSettings,
    plugin_settings: Any,
    *,
    owner_resolver: OwnerResolver = resolve_user_scope,
    client: AnyRedis | None = None,
) -> RedisBackend:
    """Builds the Redis backend; does no I/O.

    Args:
        settings: The core settings.
        plugin_settings: The `RedisSettings`.
        owner_resolver: Scopes tasks and push configs to a caller.
        client: The application's own `Redis` or `RedisCluster` client, used
            instead of the URL and never closed by the backend.
    """
    return RedisBackend(
        settings, plugin_settings, owner_resolver=owner_resolver, client=client
    )
