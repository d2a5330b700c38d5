"""The store scenario: save (CAS with an event) + get of a realistic task.

Each coroutine owns one task and loops for a fixed time: save the next
version with its event, then get it back. It checks that every save returns
a version after the previous one and that the get returns what was saved;
at the end the stored task must carry the last version and sequence (no
lost update).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from a2a.server.cluster import ConcurrentTaskModificationError

from benchmarks.adapters import Target
from benchmarks.report.stats import summary
from benchmarks.scenarios.checks import require_clean
from benchmarks.scenarios.probe import RedisProbe
from benchmarks.scenarios.writer import Writer

WARM_OPS = 5


async def run_store(
    target: Target,
    concurrency: int,
    seconds: float,
    probe: RedisProbe | None = None,
) -> dict[str, Any]:
    """Runs `concurrency` coroutines for `seconds`; ops/s and op latency.

    With a `probe`, also the Redis server's CPU and commands per op (save +
    get) over the timed phase.
    """
    run = uuid.uuid4().hex[:8]
    writer = Writer(target, concurrency=concurrency)
    task_ids = [f'store-{run}-{i}' for i in range(concurrency)]
    await writer.each(task_ids, 'warm', 0)
    counts = {'ops': 0, 'lost_updates': 0, 'errors': 0, 'conflicts': 0}
    latencies: list[float] = []

    seqs = dict.fromkeys(task_ids, 0)

    async def loop(task_id: str, until: float | None) -> None:
        ops = 0
        while (until is None and ops < WARM_OPS) or (
            until is not None and time.perf_counter() < until
        ):
            ops += 1
            seqs[task_id] += 1
            seq = seqs[task_id]
            started = time.perf_counter()
            try:
                version = await writer.save(task_id, 'load', seq)
                stored = await target.get(task_id)
            except ConcurrentTaskModificationError:
                counts['conflicts'] += 1
                return
            elapsed = time.perf_counter() - started
            if (
                stored is None
                or stored.version != version
                or stored.task.metadata['seq'] != seq
            ):
                counts['lost_updates'] += 1
            if until is not None:
                counts['ops'] += 1
                latencies.append(elapsed * 1000)

    # Untimed warm-up (connections, caches), then the timed phase.
    await asyncio.gather(*(loop(t, None) for t in task_ids))
    before = await probe.sample() if probe else None
    started = time.perf_counter()
    results = await asyncio.gather(
        *(loop(t, started + seconds) for t in task_ids), return_exceptions=True
    )
    elapsed = time.perf_counter() - started
    server = (
        (await probe.sample() - before).per(counts['ops'], 'op')
        if probe and before
        else {}
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    counts['errors'] += len(errors)
    for task_id in task_ids:
        stored = await target.get(task_id)
        if stored is None or stored.task.metadata['seq'] != seqs[task_id]:
            counts['lost_updates'] += 1
    where = f'store/{target.name}/{concurrency}'
    if errors:
        counts['first_error'] = repr(errors[0])[:300]  # type: ignore[assignment]
    require_clean(where, {**counts, 'errors': counts['errors'] + counts['conflicts']})
    return {
        'case': f'c{concurrency}',
        'concurrency': concurrency,
        'metrics': {
            'ops_per_s': counts['ops'] / elapsed,
            **{
                k: v for k, v in summary(latencies).items() if k in ('p50_ms', 'p99_ms')
            },
            **server,
        },
        'checks': {
            'ops': counts['ops'],
            'lost_updates': counts['lost_updates'],
            'conflicts': counts['conflicts'],
            'errors': counts['errors'],
        },
    }
