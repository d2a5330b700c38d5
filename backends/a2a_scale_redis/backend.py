"""`RedisBackend`: the stores of one replica over Redis or Redis Cluster."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope

from a2a_scale import Backend, ComponentHealth
from a2a_scale_redis.connection import AnyRedis, create_client, create_pubsub_client
from a2a_scale_redis.feed import RedisEventFeed, sweep_feed
from a2a_scale_redis.hub import RedisWakeupHub
from a2a_scale_redis.lifecycle import RedisQueueLifecycle
from a2a_scale_redis.push import RedisPushNotificationConfigStore
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.store import LoggedEvents, RedisTaskStore
from a2a_scale_redis.stream import RedisEventStream

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis

    from a2a_scale import ScaleSettings


class RedisBackend(Backend):
    """Task store, event stream, push configs and lifecycle on Redis.

    Args:
        settings: The core settings (namespace, retention, instance id).
        redis_settings: The Redis settings; read from the environment if
            omitted.
        owner_resolver: Scopes tasks and push configs to a caller.
        client: A ready client to use instead of one built from the URL (it
            is then not closed by `stop()`).
        pubsub_client_factory: Builds the client of the Pub/Sub connection;
            by default one from the URL (or a Cluster node).
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
        namespace = settings.namespace
        logged = LoggedEvents()
        self._task_store = RedisTaskStore(
            self.client,
            namespace=namespace,
            owner_resolver=owner_resolver,
            mode=rs.mode,
            cluster=rs.cluster,
            retention_seconds=settings.retention_seconds,
            active_ttl_seconds=rs.active_ttl_seconds,
            stream_maxlen=rs.stream_maxlen,
            feed_maxlen=rs.feed_maxlen,
            logged=logged,
        )
        self.hub = RedisWakeupHub(
            pubsub_client_factory
            or (
                lambda: create_pubsub_client(
                    rs, self.client, client_name=f'{name}:pubsub'
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
            namespace=namespace,
            mode=rs.mode,
            logged=logged,
            stream_maxlen=rs.stream_maxlen,
            retention_seconds=settings.retention_seconds,
        )
        self._push_config_store = RedisPushNotificationConfigStore(
            self.client,
            namespace=namespace,
            owner_resolver=owner_resolver,
            active_ttl_seconds=rs.active_ttl_seconds,
        )
        self._lifecycle = RedisQueueLifecycle(
            self.client,
            namespace=namespace,
            instance_id=settings.instance_id,
            reapers=[self._reap_feed],
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

    async def _connect(self) -> None:
        try:
            initialize = getattr(self.client, 'initialize', None)
            if initialize is not None:
                await initialize()
            await self.client.ping()
            await self.hub.wait_connected(self.redis_settings.connect_timeout * 2)
        except Exception as e:
            await self._close()
            raise ConnectionError(
                f'Cannot reach Redis at {self.redis_settings.display_url} '
                f'(A2A_SCALE_REDIS_URL): {type(e).__name__}: '
                f'{self._redact(str(e))}'
            ) from None

    async def _close(self) -> None:
        await self.hub.close()
        if self._owns_client:
            await self.client.aclose()

    def _redact(self, text: str) -> str:
        secret = self.redis_settings.url.get_secret_value()
        password = secret.partition('@')[0].rpartition(':')[2] if '@' in secret else ''
        return text.replace(password, '***') if password else text

    async def health(self) -> list[ComponentHealth]:
        """Pings Redis and reports the Pub/Sub connection."""
        url = self.redis_settings.display_url
        start = time.perf_counter()
        try:
            await self.client.ping()
            redis = ComponentHealth(
                'redis',
                True,
                f'{url} mode={self.redis_settings.mode}',
                (time.perf_counter() - start) * 1000,
            )
        except Exception as e:
            redis = ComponentHealth(
                'redis', False, f'{url}: {type(e).__name__}: {self._redact(str(e))}'
            )
        pubsub = ComponentHealth(
            'redis pubsub',
            self.hub.connected,
            f'{self.hub.channel_count} channel(s), '
            f'{self._event_stream.subscription_count} subscription(s)',
        )
        return [redis, pubsub]


def create_backend(
    settings: ScaleSettings,
    plugin_settings: Any,
    *,
    owner_resolver: OwnerResolver = resolve_user_scope,
) -> RedisBackend:
    """Builds the Redis backend; does no I/O."""
    return RedisBackend(settings, plugin_settings, owner_resolver=owner_resolver)
