"""Worker roles, run in a separate process (or in-process for memory).

``reader``: one replica holding N subscriptions. It reports when every
subscription saw a warm-up event, measures idle CPU, RSS and its connections
on request, then checks and times the measured events.

``serve``: one or more HTTP replicas of the e2e agent on loopback; reports its
CPU seconds on request.

Started by `benchmarks.scenarios.channel.spawn` as
``python -m benchmarks.scenarios.worker '<json>'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
from a2a.server.cluster import TaskVersion

from benchmarks.adapters import Target, TargetSpec, build_target
from benchmarks.report.stats import summary
from benchmarks.scenarios.channel import Channel, StdioChannel
from benchmarks.scenarios.checks import BenchmarkFailure, SequenceCheck, totals
from benchmarks.workload import read_stamp

WARM_TIMEOUT = 120.0
QUIET = 0.5
"""Seconds without any delivery before idle CPU is measured."""
QUIET_LIMIT = 10.0
"""Longest wait for that quiet spell; past it the measure is taken anyway."""


def connections(target: Target, process: psutil.Process | None = None) -> list[int]:
    """Local ports of this process's connections to the target's server."""
    if target.server_port is None:
        return []
    process = process or psutil.Process()
    return sorted(
        c.laddr.port
        for c in process.net_connections('tcp')
        if c.raddr and c.raddr.port == target.server_port and c.status == 'ESTABLISHED'
    )


async def measure_idle(
    target: Target, seconds: float, last_delivery: Callable[[], float]
) -> dict[str, Any]:
    """CPU (percent of one core) over `seconds`, RSS and connections, at rest.

    Waits first until nothing was delivered for `QUIET` s, so late warm-up
    events are not counted as idle work.
    """
    deadline = time.monotonic() + QUIET_LIMIT
    while time.monotonic() < deadline:
        quiet = time.monotonic() - last_delivery()
        if quiet >= QUIET:
            break
        await asyncio.sleep(QUIET - quiet)
    process = psutil.Process()
    process.cpu_percent(None)
    await asyncio.sleep(seconds)
    cpu = process.cpu_percent(None)
    ports = connections(target, process)
    return {
        'idle_cpu_percent': cpu,
        'rss_mb': process.memory_info().rss / 2**20,
        'client_connections': len(ports),
        'ports': ports,
    }


async def reader(
    target: Target,
    channel: Channel,
    *,
    task_ids: list[str],
    subscriptions: int,
    expected: int,
    grace: float,
    keep_samples: bool,
) -> None:
    """Holds `subscriptions` subscriptions over `task_ids` (round robin)."""
    checks = [SequenceCheck('load', expected) for _ in range(subscriptions)]
    warm = [False] * subscriptions
    left = {'warm': subscriptions, 'load': subscriptions}
    warmed, done = asyncio.Event(), asyncio.Event()
    latest = [time.monotonic()]

    async def follow(i: int) -> None:
        check = checks[i]
        task_id = task_ids[i % len(task_ids)]
        async for event in target.subscribe(task_id, after=TaskVersion.MISSING):
            now = time.time_ns()
            latest[0] = time.monotonic()
            stamp = read_stamp(event.event)
            if stamp is None:
                continue
            if stamp.phase == 'warm':
                if not warm[i]:
                    warm[i] = True
                    left['warm'] -= 1
                    if not left['warm']:
                        warmed.set()
                continue
            was_complete = check.complete
            check.record(event.version, stamp, now)
            if check.complete and not was_complete:
                left['load'] -= 1
                if not left['load']:
                    done.set()

    followers = [asyncio.create_task(follow(i)) for i in range(subscriptions)]

    async def first(event: asyncio.Event, within: float) -> bool:
        waiter = asyncio.create_task(event.wait())
        finished, _ = await asyncio.wait(
            [waiter, *followers], timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        for task in finished:
            if task is not waiter and task.exception() is not None:
                raise BenchmarkFailure(
                    f'{target.name}: a subscription failed: {task.exception()!r}'
                )
        return event.is_set()

    try:
        await channel.send({'ready': True})
        if not await first(warmed, WARM_TIMEOUT):
            raise BenchmarkFailure(
                f'{target.name}: {left["warm"]} of {subscriptions} subscriptions '
                f'saw no warm-up event in {WARM_TIMEOUT:.0f} s'
            )
        await channel.send({'warm': True})
        while True:
            message = await channel.recv()
            if message.get('cmd') == 'idle':
                idle = await measure_idle(
                    target, float(message['seconds']), lambda: latest[0]
                )
                await channel.send({'idle': idle})
            elif message.get('cmd') == 'finish':
                break
        await first(done, grace)
        await asyncio.sleep(0.2)  # late duplicates still count
    finally:
        for task in followers:
            task.cancel()
        for task in followers:
            with contextlib.suppress(BaseException):
                await task
    latencies = [ns / 1e6 for c in checks for ns in c.latencies_ns]
    firsts = [c.first_sent_ns for c in checks if c.first_sent_ns is not None]
    last = max((c.last_recv_ns for c in checks), default=0)
    elapsed = (last - min(firsts)) / 1e9 if firsts else 0.0
    counts = totals(checks)
    result: dict[str, Any] = {
        **counts,
        **summary(latencies),
        'elapsed_s': elapsed,
        'deliveries_per_s': counts['delivered'] / elapsed if elapsed > 0 else 0.0,
    }
    if keep_samples:
        result['samples_ms'] = latencies
    await channel.send({'result': result})


async def serve(target: Target, channel: Channel, *, replicas: int) -> None:
    """Serves `replicas` HTTP replicas of the e2e agent until told to stop."""
    from benchmarks.scenarios.e2e_agent import EchoAgent, agent_card
    from benchmarks.scenarios.http import build_app, loopback_socket, serve

    targets = [target] + [
        build_target(target.spec, role=f'{target.role}{i}') for i in range(1, replicas)
    ]
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for replica in targets:
            if replica is not target:
                await stack.enter_async_context(replica)
            sock = loopback_socket()
            url = f'http://127.0.0.1:{sock.getsockname()[1]}'
            card = agent_card(url)
            handler = replica.request_handler(EchoAgent(), card)
            if hasattr(handler, 'aclose'):
                stack.push_async_callback(handler.aclose)
            await stack.enter_async_context(serve(build_app(handler, card), sock))
            urls.append(url)
        await channel.send({'urls': urls})
        with contextlib.suppress(EOFError):
            while (command := (await channel.recv()).get('cmd')) != 'stop':
                if command == 'cpu':
                    await channel.send({'cpu': cpu_seconds()})


def cpu_seconds() -> float:
    """CPU seconds (user + system, every thread) this process has used so far."""
    return time.process_time()


ROLES: dict[str, Callable[..., Awaitable[None]]] = {'reader': reader, 'serve': serve}


async def run_role(
    role: str, spec: TargetSpec, channel: Channel, kwargs: dict[str, Any]
) -> None:
    """Opens the target as `role` and runs the role over `channel`."""
    async with build_target(spec, role=role) as target:
        await ROLES[role](target, channel, **kwargs)


async def _main(payload: dict[str, Any]) -> int:
    channel = StdioChannel()
    try:
        await run_role(
            payload['role'],
            TargetSpec.from_json(payload['spec']),
            channel,
            payload['kwargs'],
        )
    except Exception as e:
        await channel.send({'error': f'{type(e).__name__}: {e}'})
        raise
    return 0


def main() -> None:
    """Runs the role given as JSON in ``argv[1]``."""
    sys.exit(asyncio.run(_main(json.loads(sys.argv[1]))))


if __name__ == '__main__':
    main()
