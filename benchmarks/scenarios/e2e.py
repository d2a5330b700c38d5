"""The e2e scenario: streaming message requests/s through HTTP replicas.

Two replicas on a shared backend (each its own process; both in one process
for memory, which shares state only there) versus one replica with the SDK's
in-memory store: the price of clustering. Each streamed request must show
WORKING, the echoed artifact, then COMPLETED, in that order and once; a task
streamed on one replica must read back COMPLETED from the other.

Besides requests/s and latency it reports the CPU each replica process spent
per streamed request it served (process CPU time over the measured requests)
and, on Redis, the server's CPU and commands per request (see
`benchmarks.scenarios.probe`: other clients of a shared Redis count too).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from a2a.helpers import new_text_message
from a2a.types.a2a_pb2 import (
    GetTaskRequest,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)

from benchmarks.adapters import TargetSpec
from benchmarks.report.stats import summary
from benchmarks.scenarios.channel import ProcessChannel, spawn
from benchmarks.scenarios.checks import BenchmarkFailure
from benchmarks.scenarios.http import connect
from benchmarks.scenarios.probe import redis_probe
from benchmarks.sizes import Size

TIMEOUT = 30.0


@dataclass
class Replicas:
    """The replica processes of one case and the URL of every replica."""

    workers: list[ProcessChannel] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)
    """The index in `workers` of the process serving each URL."""

    async def cpu_seconds(self) -> list[float]:
        """CPU seconds each worker process has used so far."""
        found = []
        for worker in self.workers:
            await worker.send({'cmd': 'cpu'})
            found.append(float((await worker.expect('cpu', 30.0))['cpu']))
        return found


@contextlib.asynccontextmanager
async def replicas(
    spec: TargetSpec, count: int, shared_process: bool
) -> AsyncIterator[Replicas]:
    """Starts `count` replicas in one or `count` processes."""
    started = Replicas()
    try:
        groups = [count] if shared_process else [1] * count
        for group in groups:
            worker = await spawn('serve', spec.to_json(), replicas=group)
            started.workers.append(worker)
            urls = (await worker.expect('urls', 60.0))['urls']
            started.urls += urls
            started.owner += [len(started.workers) - 1] * len(urls)
        yield started
    finally:
        for worker in started.workers:
            with contextlib.suppress(Exception):
                await worker.send({'cmd': 'stop'})
            await worker.close()


def _check(responses: list[StreamResponse], text: str) -> tuple[str, list[str]]:
    """The task id and the problems of one streamed request."""
    problems = []
    task_id = ''
    states: list[int] = []
    artifacts = 0
    for r in responses:
        if r.HasField('task'):
            task_id = r.task.id
            states.append(r.task.status.state)
        elif r.HasField('status_update'):
            task_id = task_id or r.status_update.task_id
            states.append(r.status_update.status.state)
        elif r.HasField('artifact_update'):
            artifacts += 1
            if r.artifact_update.artifact.parts[0].text != text:
                problems.append('wrong artifact')
            if TaskState.TASK_STATE_COMPLETED in states:
                problems.append('artifact after completion')
    if artifacts != 1:
        problems.append(f'{artifacts} artifacts')
    if not states or states[-1] != TaskState.TASK_STATE_COMPLETED:
        problems.append(f'ended in {states[-1:] or "nothing"}')
    if states.count(TaskState.TASK_STATE_COMPLETED) != 1:
        problems.append('COMPLETED not exactly once')
    return task_id, problems


async def run_e2e(
    spec: TargetSpec, count: int, size: Size, shared_process: bool
) -> dict[str, Any]:
    """Drives `size.e2e_requests` streamed requests over `count` replicas."""
    latencies: list[float] = []
    problems: list[str] = []
    async with (
        replicas(spec, count, shared_process) as started,
        redis_probe(spec) as probe,
        contextlib.AsyncExitStack() as stack,
    ):
        urls = started.urls
        clients = [await stack.enter_async_context(connect(url)) for url in urls]
        served = [0] * len(started.workers)
        todo = list(range(size.e2e_requests))
        streamed: list[tuple[str, int]] = []

        async def work(worker: int) -> None:
            while todo:
                n = todo.pop()
                which = (n + worker) % len(clients)
                text = f'request {n}'
                started_at = time.perf_counter()
                async with asyncio.timeout(TIMEOUT):
                    responses = [
                        r
                        async for r in clients[which].send_message(
                            SendMessageRequest(
                                message=new_text_message(text, role=Role.ROLE_USER)
                            )
                        )
                    ]
                latencies.append((time.perf_counter() - started_at) * 1000)
                served[started.owner[which]] += 1
                task_id, found = _check(responses, text)
                problems.extend(found)
                if task_id:
                    streamed.append((task_id, which))

        # Untimed warm-up at the timed concurrency, so that connection pools
        # and caches are as warm as they will be: two requests per caller.
        todo[:] = list(range(2 * size.e2e_concurrency))
        await asyncio.gather(*(work(w) for w in range(size.e2e_concurrency)))
        latencies.clear()
        served[:] = [0] * len(served)
        todo[:] = list(range(size.e2e_requests))
        cpu_before = await started.cpu_seconds()
        redis_before = await probe.sample() if probe else None
        started_at = time.perf_counter()
        await asyncio.gather(*(work(w) for w in range(size.e2e_concurrency)))
        elapsed = time.perf_counter() - started_at
        redis_used = (
            (await probe.sample()) - redis_before if probe and redis_before else None
        )
        cpu_used = [
            after - before
            for after, before in zip(
                await started.cpu_seconds(), cpu_before, strict=True
            )
        ]
        # Outside the measured interval: a task streamed on one replica reads
        # back COMPLETED from another.
        if len(clients) > 1:
            for task_id, which in streamed[:4]:
                other = clients[(which + 1) % len(clients)]
                task = await other.get_task(GetTaskRequest(id=task_id))
                if task.status.state != TaskState.TASK_STATE_COMPLETED:
                    problems.append('other replica does not see COMPLETED')
    if problems:
        raise BenchmarkFailure(
            f'e2e/{spec.name}/{count}: {len(problems)} bad responses, e.g. '
            f'{sorted(set(problems))[:3]}'
        )
    return {
        'case': f'{count}-replica{"s" if count > 1 else ""}',
        'replicas': count,
        'metrics': {
            'requests_per_s': size.e2e_requests / elapsed,
            **{
                k: v for k, v in summary(latencies).items() if k in ('p50_ms', 'p99_ms')
            },
            **cpu_metrics(cpu_used, served),
            **(redis_used.per(size.e2e_requests, 'request') if redis_used else {}),
        },
        'checks': {'requests': size.e2e_requests, 'errors': len(problems)},
        'processes': [
            {'cpu_s': round(cpu, 4), 'requests': n}
            for cpu, n in zip(cpu_used, served, strict=True)
        ],
    }


def cpu_metrics(cpu_used: list[float], served: list[int]) -> dict[str, float]:
    """CPU ms per request over every replica process, and of the worst one."""
    per_process = [cpu * 1000 / n for cpu, n in zip(cpu_used, served, strict=True) if n]
    if not per_process:
        return {}
    return {
        'cpu_ms_per_request': sum(cpu_used) * 1000 / sum(served),
        'cpu_ms_per_request_max': max(per_process),
    }
