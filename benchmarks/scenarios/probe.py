"""Server-side counters of a Redis target: CPU and commands, as deltas.

`RedisProbe` samples ``INFO cpu`` and ``INFO commandstats`` of the target's
Redis server; the difference of two samples is the work the server did in
between. The benchmark uses a namespace on a Redis that other clients may
share, so their commands and CPU land in the same counters: run on a quiet
server (``A2A_SCALE_BENCH_REDIS``) when the numbers matter. The probe's own
two ``INFO`` calls per sample are subtracted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from benchmarks.adapters import TargetSpec

OWN_CALLS = 2
"""``INFO`` commands the probe itself sends per sample."""


@dataclass(frozen=True)
class Sample:
    """Cumulative server counters at one moment."""

    cpu_s: float
    calls: dict[str, int] = field(default_factory=dict)

    def __sub__(self, earlier: Sample) -> Sample:
        calls = {
            name: n - earlier.calls.get(name, 0)
            for name, n in self.calls.items()
            if n != earlier.calls.get(name, 0)
        }
        if 'info' in calls:
            calls['info'] -= OWN_CALLS
            if calls['info'] <= 0:
                del calls['info']
        return Sample(self.cpu_s - earlier.cpu_s, calls)

    @property
    def commands(self) -> int:
        """Commands of every kind."""
        return sum(self.calls.values())

    def per(self, n: int, unit: str) -> dict[str, float]:
        """Server CPU ms, commands and EVALSHA/EVAL per one of `n` `unit`s."""
        if n <= 0:
            return {}
        scripts = self.calls.get('evalsha', 0) + self.calls.get('eval', 0)
        return {
            f'redis_cpu_ms_per_{unit}': self.cpu_s * 1000 / n,
            f'redis_commands_per_{unit}': self.commands / n,
            f'redis_scripts_per_{unit}': scripts / n,
        }


class RedisProbe:
    """Samples one Redis server's CPU and command counters."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def sample(self) -> Sample:
        """The server's cumulative CPU seconds and calls per command."""
        cpu: dict[str, Any] = await self._client.info('cpu')
        stats: dict[str, Any] = await self._client.info('commandstats')
        calls = {
            name.removeprefix('cmdstat_').lower(): int(value['calls'])
            for name, value in stats.items()
        }
        return Sample(float(cpu['used_cpu_sys']) + float(cpu['used_cpu_user']), calls)


@contextlib.asynccontextmanager
async def redis_probe(spec: TargetSpec) -> AsyncIterator[RedisProbe | None]:
    """A probe of the target's Redis server, or `None` if it has none."""
    url = str(spec.params.get('url', ''))
    if not url.startswith('redis'):
        yield None
        return
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        yield RedisProbe(client)
    finally:
        await client.aclose()
