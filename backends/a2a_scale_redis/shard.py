"""One master's sharded Pub/Sub connection, for `ShardedWakeupHub`.

Also the checks and client factory of those connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from a2a_scale import ConfigurationError, telemetry
from a2a_scale_redis.channels import SentCommand, message_buffered

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    from a2a_scale_redis.sharded import ShardedWakeupHub

# Logged under the hub's name, as before this module was split from it.
logger = logging.getLogger('a2a_scale_redis.sharded')

MIN_VERSION = (7, 0)
"""The first Redis version with sharded Pub/Sub."""

NodeClientFactory = Callable[['ClusterNode'], Redis]


def node_client(node: ClusterNode, *, client_name: str | None = None) -> Redis:
    """Builds a client of one connection to `node`, without silent retries.

    Failures must reach the hub, which re-subscribes and lets readers catch
    up; a silent reconnect inside redis-py would hide lost wake-ups.
    """
    pool = ConnectionPool(
        connection_class=node.connection_class,
        max_connections=2,
        **{
            **node.connection_kwargs,
            'retry': Retry(NoBackoff(), 0),
            'health_check_interval': 0,
            'client_name': client_name,
        },
    )
    return Redis.from_pool(pool)


async def check_sharded_pubsub(cluster: RedisCluster) -> None:
    """Checks that every master of `cluster` runs Redis 7 or later.

    Raises:
        ConfigurationError: Naming the node and its server version.
    """
    reply: Any = await cluster.info('server', target_nodes=cluster.PRIMARIES)
    if 'redis_version' in reply:  # a single master: its reply alone
        reply = {'the only master': reply}
    for node, info in reply.items():
        version = str(info.get('redis_version', '0'))
        parts = tuple(int(p) for p in version.split('.')[:2] if p.isdigit())
        if parts < MIN_VERSION:
            raise ConfigurationError(
                f'Redis Cluster node {node} runs Redis {version}; a2a-scale '
                'needs Redis 7.0 or later on a Cluster (sharded Pub/Sub: '
                'SPUBLISH/SSUBSCRIBE)',
                variable='A2A_SCALE_REDIS_CLUSTER',
            )


class Shard:
    """One sharded Pub/Sub connection, to one master, and what it listens to.

    `run` keeps the connection subscribed to the shard's channels and hands
    what it reads to the hub, which routes channels to shards.
    """

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.channels: set[bytes] = set()
        self.unsubscribing: Counter[bytes] = Counter()
        self.pubsub: PubSub | None = None
        self.lock = asyncio.Lock()
        self.sent: deque[SentCommand] = deque()
        self.connected = False
        self.task: asyncio.Task[None] | None = None

    async def run(self, hub: ShardedWakeupHub) -> None:
        """Keeps this master's connection subscribed, and reads it."""
        failures = 0
        while True:
            if failures:
                # The node may have lost its slots (failover, migration).
                with contextlib.suppress(Exception):
                    await hub._refresh_topology()
                for name in list(self.channels):
                    node = hub._route(name)
                    if node is None or node.name != self.node.name:
                        hub._lose(name)
                if not self.channels:
                    hub._drop(self)
                    return
            client = hub._factory(self.node)
            pubsub = client.pubsub()
            try:
                async with self.lock:
                    self.pubsub = pubsub
                    self.unsubscribing.clear()
                    self.sent.clear()
                    by_slot: dict[int, list[bytes]] = defaultdict(list)
                    for name in self.channels:
                        by_slot[hub._cluster.keyslot(name)].append(name)
                    # SSUBSCRIBE takes the channels of one slot per call.
                    for names in by_slot.values():
                        await self.send(pubsub, 'SSUBSCRIBE', *names)
                    await self.send(pubsub, 'PING')
                hub.connections += 1
                failures = 0
                await self.read(hub, pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                logger.warning(
                    'Redis sharded Pub/Sub connection to %s lost (%s); reconnecting',
                    self.node.name,
                    e,
                )
                telemetry.count_reconnect('redis', 'pubsub')
            finally:
                self.connected = False
                self.pubsub = None
                hub._update_connected()
                loop = asyncio.get_running_loop()
                for name in self.channels:
                    future = hub._confirm.get(name)
                    if future is not None and future.done():
                        hub._confirm[name] = loop.create_future()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(hub._delay(failures))

    async def read(self, hub: ShardedWakeupHub, pubsub: PubSub) -> None:
        """Hands the connection's messages to the hub's handlers."""
        last_seen = time.monotonic()
        while True:
            try:
                message: dict[str, Any] | None = await pubsub.get_message(
                    timeout=hub._ping_interval
                )
            except ResponseError as e:
                sent = self.sent.popleft() if self.sent else None
                if sent is None or sent.name is None:
                    raise  # not a joiner's: the connection is made again
                hub._refused_on(self, sent, e)
                continue
            now = time.monotonic()
            if message is None:
                if now - last_seen > 2 * hub._ping_interval:
                    raise ConnectionError('no reply to Pub/Sub pings')
                async with self.lock:
                    await self.send(pubsub, 'PING')
                continue
            last_seen = now
            kind = message['type']
            channel = message['channel']
            if kind in {'ssubscribe', 'pong'}:
                self._replied()
            if kind == 'smessage':
                handler = hub._handlers.get(channel)
                if handler is not None:
                    handler(message['data'])
                    if not message_buffered(pubsub):
                        # The readers it woke run before this loop waits
                        # for the next message; a burst is still read whole.
                        await asyncio.sleep(0)
            elif kind == 'ssubscribe':
                if hub._owner.get(channel) is not self:
                    continue
                handler = hub._handlers.get(channel)
                if handler is not None:
                    handler(None)
                future = hub._confirm.get(channel)
                if future is not None and not future.done():
                    future.set_result(None)
            elif kind == 'sunsubscribe':
                if self.unsubscribing[channel] > 0:
                    self._replied()
                    self.unsubscribing[channel] -= 1
                    if not self.unsubscribing[channel]:
                        del self.unsubscribing[channel]
                elif hub._owner.get(channel) is self:
                    # Redis dropped it: its slot moved to another master.
                    hub._lose(channel)
                    hub._update_connected()
            elif kind == 'pong' and not self.connected:
                self.connected = True
                hub._update_connected()

    async def send(
        self, pubsub: PubSub, command: str, *names: bytes, joiner: int = 0
    ) -> None:
        """Sends `command` and notes the replies it awaits; under `lock`.

        Args:
            pubsub: The shard's connection.
            command: ``SSUBSCRIBE``, ``SUNSUBSCRIBE`` or ``PING``.
            *names: The channels.
            joiner: For a joiner's ``SSUBSCRIBE`` of one channel, which try.
        """
        sent = SentCommand(max(1, len(names)), names[0] if joiner else None, joiner)
        self.sent.append(sent)
        try:
            await pubsub.execute_command(command, *names)
        except BaseException:
            if self.sent and self.sent[-1] is sent:
                self.sent.pop()
            raise

    def _replied(self) -> None:
        if self.sent:
            self.sent[0].replies -= 1
            if not self.sent[0].replies:
                self.sent.popleft()
