"""The latency and fan-out scenarios: a writer replica and a reader replica.

The orchestrator process is the writer; the reader is a separate OS process
with its own backend instance (the memory backend shares state only inside
one process, so its reader runs in-process, as a separate instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from benchmarks.adapters import Target, TargetSpec
from benchmarks.adapters.registry import POSTGRES_DSN, REDIS_URL
from benchmarks.scenarios.channel import Channel, QueueChannel, spawn
from benchmarks.scenarios.checks import require_clean
from benchmarks.scenarios.probe import RedisProbe
from benchmarks.scenarios.worker import WARM_TIMEOUT as WORKER_WARM_TIMEOUT
from benchmarks.scenarios.worker import run_role
from benchmarks.scenarios.writer import Writer
from benchmarks.sizes import Size

READY_TIMEOUT = 60.0
WARM_TIMEOUT = WORKER_WARM_TIMEOUT + 30.0
"""Longer than the worker's own limit, so its message (with counts) wins."""
WRITERS = 64
"""Concurrent writes of the fan-out writer (per task, writes stay in order)."""


class Phases:
    """Wall time of each phase of a scenario, for the record."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        """Ends `phase` (it started at the previous mark)."""
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._last, 3)
        self._last = now


@dataclass
class ReaderHandle:
    """A running reader replica."""

    channel: Channel
    in_process: bool


@contextlib.asynccontextmanager
async def reader_replica(
    spec: TargetSpec, cross_process: bool, **kwargs: Any
) -> AsyncIterator[ReaderHandle]:
    """Starts a reader replica: a subprocess, or an in-process task."""
    if cross_process:
        channel = await spawn('reader', spec.to_json(), **kwargs)
        try:
            yield ReaderHandle(channel, in_process=False)
        finally:
            await channel.close()
        return
    ours, theirs = QueueChannel.pair()
    task = asyncio.create_task(run_role('reader', spec, theirs, kwargs))
    try:
        yield ReaderHandle(ours, in_process=True)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _warm_up(
    writer: Writer, channel: Channel, task_ids: list[str], *, replays: bool
) -> None:
    """Waits until every subscription has seen a warm-up event.

    Every task already holds one, written before the reader started. A
    stream that replays delivers it to each subscription, so nothing more is
    written. A live-only stream (pubsub) gets warm-up rounds until the reader
    reports, since subscriptions that were not listening yet miss a round.
    """
    await channel.expect('ready', READY_TIMEOUT)
    if replays:
        await channel.expect('warm', WARM_TIMEOUT)
        return
    deadline = time.monotonic() + WARM_TIMEOUT
    seq = 1
    while time.monotonic() < deadline:
        started = time.monotonic()
        await writer.each(task_ids, 'warm', seq)
        seq += 1
        wait = max(1.0, 3 * (time.monotonic() - started))
        if await channel.poll('warm', wait) is not None:
            return
    await channel.expect('warm', 1.0)


async def server_connections(target: Target, ports: list[int]) -> int | None:
    """Connections the server sees from `ports` (CLIENT LIST, pg_stat_activity)."""
    if target.server_port is None:
        return None
    wanted = set(ports)
    on_redis = target.spec.kind == 'floor' or (
        target.spec.kind == 'scale' and target.spec.params.get('backend') != 'postgres'
    )
    if on_redis:
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        try:
            listed = await client.client_list()
        finally:
            await client.aclose()
        return sum(1 for c in listed if int(c['addr'].rsplit(':', 1)[1]) in wanted)
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        rows = await conn.fetch('SELECT client_port FROM pg_stat_activity')
    finally:
        await conn.close()
    return sum(1 for r in rows if r['client_port'] in wanted)


async def run_latency(
    target: Target, size: Size, probe: RedisProbe | None = None
) -> dict[str, Any]:
    """300 updates 5 ms apart from this process; delivery times in the reader.

    With a `probe`, also the Redis server's CPU and commands per delivered
    event (the save, the wake-up and the reader's read) over the updates.
    """
    task_id = f'lat-{uuid.uuid4().hex[:10]}'
    writer = Writer(target)
    await writer.save(task_id, 'warm', 0)
    count = size.latency_updates
    async with reader_replica(
        target.spec,
        target.cross_process,
        task_ids=[task_id],
        subscriptions=1,
        expected=count,
        grace=10.0,
        keep_samples=True,
    ) as reader:
        await _warm_up(writer, reader.channel, [task_id], replays=target.replays)
        before = await probe.sample() if probe else None
        start = time.perf_counter()
        for seq in range(1, count + 1):
            delay = start + seq * size.latency_interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await writer.save(task_id, 'load', seq)
        await reader.channel.send({'cmd': 'finish'})
        result = (await reader.channel.expect('result', 60.0))['result']
        server = (
            (await probe.sample() - before).per(result['delivered'], 'event')
            if probe and before
            else {}
        )
    samples = [round(ms, 4) for ms in result.pop('samples_ms')]
    where = f'latency/{target.name}'
    require_clean(where, result)
    return {
        'case': 'cross-replica',
        'metrics': {
            **{
                k: result[k]
                for k in ('p50_ms', 'p90_ms', 'p99_ms', 'max_ms', 'mean_ms')
            },
            **server,
        },
        'checks': {
            k: result[k]
            for k in ('expected', 'delivered', 'lost', 'duplicated', 'out_of_order')
        },
        'samples_ms': samples,
        'reader': 'in-process' if not target.cross_process else 'subprocess',
    }


async def run_fanout(
    target: Target, size: Size, layout: str, subscriptions: int
) -> dict[str, Any]:
    """`subscriptions` on one reader, on distinct tasks or all on one task."""
    run = uuid.uuid4().hex[:8]
    n_tasks = subscriptions if layout == 'distinct' else 1
    task_ids = [f'fan-{run}-{i}' for i in range(n_tasks)]
    writer = Writer(target, concurrency=WRITERS)
    phases = Phases()
    await writer.each(task_ids, 'warm', 0)  # creates the tasks
    phases.mark('create')
    count = size.fanout_events_per_task(layout, subscriptions)
    idle_seconds = (
        size.idle_seconds if subscriptions > 1 else min(size.idle_seconds, 1.0)
    )
    async with reader_replica(
        target.spec,
        target.cross_process,
        task_ids=task_ids,
        subscriptions=subscriptions,
        expected=count,
        grace=60.0,
        keep_samples=False,
    ) as reader:
        await _warm_up(writer, reader.channel, task_ids, replays=target.replays)
        phases.mark('warm')
        await reader.channel.send({'cmd': 'idle', 'seconds': idle_seconds})
        idle = (await reader.channel.expect('idle', idle_seconds + 30))['idle']
        connections = await server_connections(target, idle.pop('ports'))
        if reader.in_process:
            idle['client_connections'] = None
        phases.mark('idle')
        await writer.burst(task_ids, 'load', count)
        phases.mark('burst')
        await reader.channel.send({'cmd': 'finish'})
        result = (await reader.channel.expect('result', 120.0))['result']
        phases.mark('drain')
    phases.mark('stop')
    require_clean(f'fanout/{target.name}/{layout}-{subscriptions}', result)
    return {
        'case': f'{layout}-{subscriptions}',
        'layout': layout,
        'subscriptions': subscriptions,
        'metrics': {
            'deliveries_per_s': result['deliveries_per_s'],
            'p50_ms': result['p50_ms'],
            'p99_ms': result['p99_ms'],
            'rss_mb': idle['rss_mb'],
            'idle_cpu_percent': idle['idle_cpu_percent'],
            'connections': connections,
        },
        'checks': {
            k: result[k]
            for k in ('expected', 'delivered', 'lost', 'duplicated', 'out_of_order')
        },
        'reader': 'in-process' if reader.in_process else 'subprocess',
        'phases_s': phases.seconds,
    }
