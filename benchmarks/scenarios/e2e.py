"""The e2e scenario: streaming message requests/s through HTTP replicas.

Two replicas on a shared backend (each its own process; both in one process
for memory, which shares state only there) versus one replica with the SDK's
in-memory store: the price of clustering. Each streamed request must show
WORKING, the echoed artifact, then COMPLETED, in that order and once; a task
streamed on one replica must read back COMPLETED from the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
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
from benchmarks.sizes import Size

TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def replicas(
    spec: TargetSpec, count: int, shared_process: bool
) -> AsyncIterator[list[str]]:
    """Starts `count` replicas; yields their URLs."""
    workers: list[ProcessChannel] = []
    urls: list[str] = []
    try:
        groups = [count] if shared_process else [1] * count
        for group in groups:
            worker = await spawn('serve', spec.to_json(), replicas=group)
            workers.append(worker)
            urls += (await worker.expect('urls', 60.0))['urls']
        yield urls
    finally:
        for worker in workers:
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
        replicas(spec, count, shared_process) as urls,
        contextlib.AsyncExitStack() as stack,
    ):
        clients = [await stack.enter_async_context(connect(url)) for url in urls]
        todo = list(range(size.e2e_requests))
        cross_checked: list[str] = []

        async def work(worker: int) -> None:
            while todo:
                n = todo.pop()
                client = clients[(n + worker) % len(clients)]
                text = f'request {n}'
                started = time.perf_counter()
                async with asyncio.timeout(TIMEOUT):
                    responses = [
                        r
                        async for r in client.send_message(
                            SendMessageRequest(
                                message=new_text_message(text, role=Role.ROLE_USER)
                            )
                        )
                    ]
                latencies.append((time.perf_counter() - started) * 1000)
                task_id, found = _check(responses, text)
                problems.extend(found)
                if len(clients) > 1 and len(cross_checked) < 4 and task_id:
                    other = clients[(n + worker + 1) % len(clients)]
                    task = await other.get_task(GetTaskRequest(id=task_id))
                    cross_checked.append(task_id)
                    if task.status.state != TaskState.TASK_STATE_COMPLETED:
                        problems.append('other replica does not see COMPLETED')

        # Untimed warm-up: one request per client.
        saved = size.e2e_requests
        todo[:] = list(range(len(clients)))
        await asyncio.gather(*(work(0) for _ in clients))
        latencies.clear()
        todo[:] = list(range(saved))
        started = time.perf_counter()
        await asyncio.gather(*(work(w) for w in range(size.e2e_concurrency)))
        elapsed = time.perf_counter() - started
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
        },
        'checks': {'requests': size.e2e_requests, 'errors': len(problems)},
    }
