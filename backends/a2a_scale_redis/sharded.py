"""`ShardedWakeupHub`: sharded Pub/Sub wake-ups on a Redis Cluster (Redis 7+).

On a Cluster a task's wake-up channel carries the task's hash tag and the
save scripts ``SPUBLISH`` to it, so a wake-up travels only to the master
that owns the task's slot, not to every node over the cluster bus. A
replica listens with one sharded Pub/Sub connection per master that owns
channels it listens to: O(masters) connections, however many subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING

from a2a_scale_redis.channels import CountedChannels
from a2a_scale_redis.shard import (
    MIN_VERSION,
    NodeClientFactory,
    Shard,
    check_sharded_pubsub,
    node_client,
)

if TYPE_CHECKING:
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.exceptions import ResponseError

    from a2a_scale_redis.channels import SentCommand

__all__ = [
    'MIN_VERSION',
    'NodeClientFactory',
    'ShardedWakeupHub',
    'check_sharded_pubsub',
    'node_client',
]

logger = logging.getLogger(__name__)


class ShardedWakeupHub(CountedChannels):
    """Multiplexes a replica's wake-up channels over one connection per master.

    Channels are sharded channels (``SSUBSCRIBE``), each subscribed on the
    master that owns its slot, grouped per node. The hub re-subscribes a
    node's channels after a dropped connection, and moves channels whose slot
    moved (a failover, a slot migration: Redis then sends ``sunsubscribe``)
    to their new owner. After each (re)subscription it calls the channel's
    handler with `None`, so readers catch up from their last position.
    Registrations are counted per channel, as in `RedisWakeupHub`.

    A control channel (hash-tagged, so it has a slot too) keeps one
    connection open while nothing is followed; the hub counts as connected
    when every connection answered a ``PING`` sent after its subscriptions.

    Args:
        cluster: The backend's Cluster client; its slot map routes channels.
        node_client_factory: Builds the client of one node's connection.
        control_channel: A hash-tagged channel of this replica.
        ping_interval: Seconds of silence before a connection is pinged.
        subscribe_timeout: How long `add` waits for Redis to confirm.
        backoff_base: First reconnect delay (jittered, doubling).
        backoff_cap: Longest reconnect delay.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        node_client_factory: NodeClientFactory,
        *,
        control_channel: str,
        ping_interval: float = 15.0,
        subscribe_timeout: float = 10.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
    ) -> None:
        super().__init__(
            subscribe_timeout=subscribe_timeout, backoff=(backoff_base, backoff_cap)
        )
        self._cluster = cluster
        self._factory = node_client_factory
        self._control = control_channel.encode()
        self._ping_interval = ping_interval
        self._shards: dict[str, Shard] = {}
        self._owner: dict[bytes, Shard] = {}
        self._lost: set[bytes] = set()
        self._lost_event = asyncio.Event()
        self._relocator: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._topology = asyncio.Lock()
        self.connections = 0
        """How many times a shard connection was made (first ones + reconnects)."""
        self.relocations = 0
        """How many channels left their master's connection to be placed again
        (failover, slot migration, a reconnect that found another master)."""
        self.topology_reads = 0
        """How many times the hub re-read the Cluster's slot map."""

    @property
    def shard_count(self) -> int:
        """How many sharded Pub/Sub connections the hub keeps (one per master)."""
        return len(self._shards)

    def shard_of(self, channel: str) -> str | None:
        """The node (``host:port``) whose connection listens to `channel`."""
        shard = self._owner.get(channel.encode())
        return None if shard is None else shard.node.name

    def start(self) -> None:
        """Opens the hub: places the control channel and every followed one.

        Idempotent; channels added later are placed by `add`.

        Raises:
            RuntimeError: If the hub was closed.
        """
        if self._closed:
            raise RuntimeError('The Redis wake-up hub is closed')
        if self._relocator is not None and not self._relocator.done():
            return
        self._relocator = asyncio.create_task(
            self._relocate(), name='a2a-scale-redis-hub-relocator'
        )
        for name in [self._control, *self._handlers]:
            if name not in self._owner:
                self._lose(name)

    async def close(self) -> None:
        """Closes every connection; the hub stays closed."""
        self._closed = True
        relocator, self._relocator = self._relocator, None
        tasks = [t for t in [relocator, *self._closing] if t is not None]
        for shard in self._shards.values():
            if shard.task is not None:
                tasks.append(shard.task)
        self._shards.clear()
        self._owner.clear()
        self._lost.clear()
        self._connected.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._cancel_retries()

    async def _join(self, name: bytes) -> None:
        await self._place(name)

    async def _leave(self, name: bytes) -> None:
        self._lost.discard(name)
        shard = self._owner.pop(name, None)
        if shard is None:
            return
        shard.channels.discard(name)
        if not shard.channels:
            self._drop(shard)
            return
        async with shard.lock:
            if shard.pubsub is not None:
                shard.unsubscribing[name] += 1
                with contextlib.suppress(Exception):
                    await shard.send(shard.pubsub, 'SUNSUBSCRIBE', name)

    def _route(self, name: bytes) -> ClusterNode | None:
        try:
            return self._cluster.get_node_from_key(name.decode())
        except Exception:
            return None

    async def _place(self, name: bytes) -> None:
        """Subscribes `name` on the connection to the master of its slot."""
        node = self._route(name)
        if node is None:
            self._lose(name)
            return
        shard = self._shards.get(node.name)
        if shard is None:
            shard = self._shards[node.name] = Shard(node)
            shard.task = asyncio.create_task(
                shard.run(self), name=f'a2a-scale-redis-hub-{node.name}'
            )
            self._update_connected()
        shard.channels.add(name)
        self._owner[name] = shard
        await self._subscribe(shard, name, tries=1)

    async def _subscribe(self, shard: Shard, name: bytes, *, tries: int) -> None:
        """Sends a joiner's ``SSUBSCRIBE`` of `name` (its `tries`-th)."""
        async with shard.lock:
            if shard.pubsub is not None and self._owner.get(name) is shard:
                with contextlib.suppress(Exception):
                    await shard.send(shard.pubsub, 'SSUBSCRIBE', name, joiner=tries)

    def _refused_on(
        self, shard: Shard, sent: SentCommand, error: ResponseError
    ) -> None:
        """A master refused a joiner's ``SSUBSCRIBE``: try again, or fail it.

        As in `RedisWakeupHub`: the connection and the other subscriptions
        stay, and the other channels of `shard` are told to catch up.
        """
        name = sent.name
        if name is None:
            return

        async def resend(tries: int) -> None:
            await self._subscribe(shard, name, tries=tries)

        self._refused(sent, error, shard.channels, resend)

    def _lose(self, name: bytes) -> None:
        """Hands `name` to the relocator, which finds its master again."""
        shard = self._owner.pop(name, None)
        if shard is not None:
            shard.channels.discard(name)
            self.relocations += 1
        future = self._confirm.get(name)
        if future is not None and future.done():
            self._confirm[name] = asyncio.get_running_loop().create_future()
        self._lost.add(name)
        self._lost_event.set()

    def _drop(self, shard: Shard) -> None:
        """Closes the connection of a shard that has nothing left to follow.

        The connection closes in the background: a caller unsubscribing in
        an async generator's ``finally`` must not await a cancelled task.
        """
        if self._shards.get(shard.node.name) is shard:
            del self._shards[shard.node.name]
        self._update_connected()
        task = shard.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _update_connected(self) -> None:
        shards = self._shards.values()
        if shards and all(s.connected for s in shards) and not self._lost:
            self._connected.set()
        else:
            self._connected.clear()

    async def _refresh_topology(self) -> None:
        async with self._topology:
            self.topology_reads += 1
            await self._cluster.nodes_manager.initialize()

    async def _relocate(self) -> None:
        """Finds the masters of lost channels and subscribes them there."""
        failures = 0
        while True:
            await self._lost_event.wait()
            self._lost_event.clear()
            try:
                await self._refresh_topology()
            except Exception as e:
                logger.warning('Cannot read the Redis Cluster slot map (%s)', e)
                failures += 1
            else:
                lost, self._lost = self._lost, set()
                for name in lost:
                    wanted = name in self._handlers or name == self._control
                    if wanted and name not in self._owner:
                        await self._place(name)
                for shard in list(self._shards.values()):
                    if not shard.channels:
                        self._drop(shard)
                failures = failures + 1 if self._lost else 0
            self._update_connected()
            if failures:
                self._lost_event.set()
                await asyncio.sleep(self._delay(failures))

    def _delay(self, failures: int) -> float:
        base, cap = self._backoff
        return min(cap, random.random() * base * 2 ** min(failures, 16))  # noqa: S311
